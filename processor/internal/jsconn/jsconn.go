// Package jsconn connects an operator command (backfill, reconcile --repair) to JetStream:
// one attempt, failing fast with a message naming NATS_URL.
package jsconn

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/stream"
)

// connectTimeout bounds each setup step of an operator command's connection to JetStream.
const connectTimeout = 10 * time.Second

// OpenCommandStream connects an operator command to JetStream and makes sure the stream exists
// (STREAM_REPLICAS as configured). done closes the connection once every publish was
// acknowledged.
func OpenCommandStream(ctx context.Context, cfg config.Processor, name string) (js jetstream.JetStream, done func(), err error) {
	nc, closed, err := connectCommandNATS(cfg.NATSURL, name)
	if err != nil {
		return nil, nil, err
	}
	done = func() { closeNATS(nc, closed) }
	if js, err = jetstream.New(nc); err != nil {
		done()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if _, err := stream.Ensure(setupCtx, js, stream.Options{Replicas: cfg.StreamReplicas}); err != nil {
		done()
		return nil, nil, fmt.Errorf("NATS_URL %s: JetStream not usable (is JetStream enabled?): %w", cfg.NATSURL, err)
	}
	return js, done, nil
}

// connectCommandNATS connects an operator command: one attempt, failing fast with a message
// naming NATS_URL. closed is closed once the connection is.
func connectCommandNATS(url, name string) (*nats.Conn, chan struct{}, error) {
	closed := make(chan struct{})
	nc, err := nats.Connect(url, nats.Name(name), nats.Timeout(5*time.Second),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return nil, nil, fmt.Errorf("NATS_URL %s: %w", url, err)
	}
	return nc, closed, nil
}

// closeNATS closes a command's connection (every publish was acknowledged already) and waits
// for it to be closed.
func closeNATS(nc *nats.Conn, closed <-chan struct{}) {
	nc.Close()
	select {
	case <-closed:
	case <-time.After(connectTimeout):
	}
}
