package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/pkg/stream"
)

const (
	// ensureStreamTimeout bounds the wait for JetStream at start; past it the process exits
	// non-zero and its supervisor restarts it.
	ensureStreamTimeout = time.Minute
	// shutdownTimeout bounds how long in-flight webhooks may take once SIGTERM arrived. A webhook
	// takes at most the body read plus PUBLISH_TIMEOUT.
	shutdownTimeout = 30 * time.Second
	// drainTimeout bounds the NATS drain after the HTTP server stopped.
	drainTimeout = 10 * time.Second
)

// serve runs the webhook listener until ctx is done, then stops accepting requests, finishes
// the in-flight ones, drains NATS and returns nil.
func serve(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, err := config.LoadListener(getenv)
	if err != nil {
		return err
	}

	conn, err := natsconn.Connect(cfg.NATSURL, "tollgate-listener", "webhooks get 503 until it is back", logger, natsconn.Creds(cfg.NATSCreds)...)
	if err != nil {
		return err
	}
	nc := conn.Conn
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		nc.Close()
		return fmt.Errorf("HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	// Serve at once: /healthz answers and /readyz says why it is not ready while the stream is
	// being ensured; webhooks get 503 until then and Stripe retries.
	handler := newServer(cfg, nc, js, logger, prometheus.NewRegistry())
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      cfg.PublishTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("listening", "addr", ln.Addr().String(), "secrets", len(cfg.WebhookSecrets),
		"max_body_bytes", cfg.MaxBodyBytes, "tolerance", cfg.WebhookTolerance.String())

	// A failed ensure stops the server too: the process must not look healthy without a stream.
	serveCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	ensured := make(chan error, 1)
	go func() {
		err := ensureStream(serveCtx, js, stream.Options{Replicas: cfg.StreamReplicas}, logger, ensureStreamTimeout)
		if err != nil {
			stop(err)
		}
		ensured <- err
	}()

	go natsconn.StopOnLost(serveCtx, conn, stop)

	serveErr := httpx.Serve(serveCtx, srv, ln, shutdownTimeout)
	lostErr := natsconn.LostCause(serveCtx)
	logger.Info("http server stopped; draining nats")
	stop(nil)
	ensureErr := <-ensured
	if errors.Is(ensureErr, context.Canceled) {
		ensureErr = nil // stopped before the stream was there: not its failure
	}
	err = errors.Join(lostErr, serveErr, ensureErr, conn.DrainWait(drainTimeout))
	if err == nil {
		logger.Info("stopped")
	}
	return err
}

// ensureStream creates or updates the stream with opts (STREAM_REPLICAS), retrying with a capped
// exponential backoff until it succeeds, ctx is done or timeout passed. A work-queue stream of a
// development build (stream.ErrWorkQueue) fails at once.
func ensureStream(ctx context.Context, js jetstream.JetStream, opts stream.Options, logger *slog.Logger, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := errors.New("nats: not connected")
		if js.Conn().IsConnected() {
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = stream.Ensure(actx, js, opts)
			acancel()
		}
		if err == nil {
			logger.Info("stream ready", "stream", stream.Name, "attempt", attempt)
			return nil
		}
		if errors.Is(err, stream.ErrWorkQueue) {
			return err // retrying cannot help: the operator must remove the stream
		}
		logger.Warn("stream not ready yet; retrying", "stream", stream.Name, "attempt", attempt, "retry_in", backoff.String(), "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("JetStream stream %s not ready after %d attempts (NATS_URL unreachable or JetStream disabled?): %w", stream.Name, attempt, errors.Join(ctx.Err(), err))
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
