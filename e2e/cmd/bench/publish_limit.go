package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/e2e/load"
	"github.com/tollgate/tollgate/e2e/rig"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// publishLimit measures, back to back, the listener and a bare JetStream client (nats.go, no
// HTTP, no signature check) storing the same kind of events in the same stream of the same
// server (`sync_interval: always`), each at webhookConc concurrent publishes that wait for their
// PubAck, with a Nats-Msg-Id as the listener sends. The bare client is what the disk gives: the
// listener's limit with this durability. Run while the processor is stopped (after webhooks);
// the events are purged afterwards.
func (b *bench) publishLimit(ctx context.Context, r *rig.Rig) {
	n := b.n(webhookRequests / 2)
	lis, err := b.sendWebhooks(ctx, r.Stack.URL(stack.Listener), r.Stack.WebhookSecret, "pll", n)
	if err != nil {
		b.fail(fmt.Errorf("publish limit, listener: %w", err))
		return
	}
	bare, err := b.publishBare(ctx, r.NATS.URL(), "plb", n)
	if err != nil {
		b.fail(fmt.Errorf("publish limit, bare JetStream client: %w", err))
		return
	}
	if err := purge(ctx, r.NATS.URL()); err != nil {
		b.fail(err)
	}
	b.say("publish limit: listener %s; bare JetStream client %s", lis, bare)
	b.rows = append(b.rows,
		row{fmt.Sprintf("webhook acceptance beside its limit: listener, NATS `sync_interval: always` (c%d)", webhookConc),
			fmt.Sprintf("%s; %.0f%% of the bare JetStream client", summary(lis), 100*lis.Rate()/bare.Rate()), "", "—"},
		row{fmt.Sprintf("bare JetStream client: the same events published to the same server and stream, PubAck awaited (c%d)", webhookConc),
			summary(bare), "", "—"},
	)
}

// publishBare publishes warmup then n events (customers named after prefix) as the listener
// would, from webhookConc workers, and returns the figures of the n.
func (b *bench) publishBare(ctx context.Context, url, prefix string, n int) (load.Result, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return load.Result{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return load.Result{}, err
	}
	type msg struct {
		subject, id string
		payload     []byte
	}
	events := lifecycleEvents(prefix+b.runID+"_", (warmup+n)/5+1, 5)[:warmup+n]
	msgs := make([]msg, len(events))
	for i, ev := range events {
		e, err := stripeevent.Parse(ev.Payload)
		if err != nil {
			return load.Result{}, fmt.Errorf("event %s: %w", ev.ID, err)
		}
		msgs[i] = msg{stream.Subject(e.CustomerID, e.Type), e.ID, ev.Payload}
	}
	off := 0
	op := func(ctx context.Context, _, i int) error {
		m := msgs[off+i]
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ack, err := js.Publish(ctx, m.subject, m.payload, jetstream.WithMsgID(m.id))
		if err == nil && ack.Duplicate {
			err = errors.New("duplicate: the events of this run must be new")
		}
		return err
	}
	if res, err := load.Run(ctx, load.Config{Workers: webhookConc, Requests: warmup}, op); err != nil || res.Errors > 0 {
		return res, errors.Join(err, res.FirstErr)
	}
	off = warmup
	res, err := load.Run(ctx, load.Config{Workers: webhookConc, Requests: n, Duration: webhookMax}, op)
	if err == nil && res.Errors > 0 {
		err = fmt.Errorf("%d of %d publishes failed, first: %w", res.Errors, res.Requests, res.FirstErr)
	}
	return res, err
}
