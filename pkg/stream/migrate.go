package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Legacy reports whether a stream's configuration is an earlier release's (LimitsPolicy, 30
// days): it keeps applied events and answers 503 once full of them. MigrateToWorkQueue converts it.
func Legacy(cfg jetstream.StreamConfig) bool { return cfg.Retention != jetstream.WorkQueuePolicy }

// MigrateToWorkQueue converts a legacy LimitsPolicy stream into Config(opts) without losing an
// event, for the processor to run next to its consumer, which must be consuming meanwhile:
//
//  1. the stream is closed to new events (MaxMsgs = what it holds, DiscardNew): every webhook
//     gets 503 and Stripe retries it later, so nothing offered meanwhile is lost;
//  2. it waits until the durable consumer has nothing pending and nothing unacknowledged;
//  3. it deletes the stream (the event store holds every applied event) and creates the work
//     queue. The consumer finds its consumer deleted and creates it again.
//
// Webhooks are refused only for the time the processor needs to catch up (seconds when it is
// current). It returns nil at once when the stream already is a work queue. Of two processors
// migrating at once, the second finds the work queue and stops.
func MigrateToWorkQueue(ctx context.Context, js jetstream.JetStream, opts Options, durable string, poll time.Duration, log *slog.Logger) error {
	s, err := js.Stream(ctx, Name)
	if err != nil {
		return fmt.Errorf("migrate stream %s: %w", Name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("migrate stream %s: %w", Name, err)
	}
	if !Legacy(info.Config) {
		return nil
	}
	opts = keepOperatorSettings(opts, info.Config)
	log.Warn("stream has limits retention: closing it to new events until the processor applied what it holds, then recreating it as a work queue",
		"stream", Name, "messages", info.State.Msgs)
	closed := info.Config
	closed.Discard = jetstream.DiscardNew
	closed.MaxMsgs = int64(max(info.State.Msgs, 1)) //nolint:gosec // a message count fits
	if _, err := js.UpdateStream(ctx, closed); err != nil {
		return fmt.Errorf("migrate stream %s: close to new events: %w", Name, err)
	}
	for {
		ci, err := js.Consumer(ctx, Name, durable)
		if err == nil {
			var cinfo *jetstream.ConsumerInfo
			if cinfo, err = ci.Info(ctx); err == nil && cinfo.NumPending == 0 && cinfo.NumAckPending == 0 {
				break
			}
		}
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			log.Warn("migrate stream: consumer info", "error", err)
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("migrate stream %s: the processor did not catch up: %w", Name, ctx.Err())
		case <-t.C:
		}
	}
	// Re-read: another processor may have migrated meanwhile; never delete a work queue.
	if info, err = s.Info(ctx); err != nil {
		return fmt.Errorf("migrate stream %s: %w", Name, err)
	}
	if !Legacy(info.Config) {
		return nil
	}
	// WARNING: delete only after the consumer applied and acknowledged every message (above)
	// and with the stream closed to new ones: events deleted unapplied would be lost.
	if err := js.DeleteStream(ctx, Name); err != nil {
		return fmt.Errorf("migrate stream %s: delete: %w", Name, err)
	}
	if _, err := js.CreateStream(ctx, Config(opts)); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("migrate stream %s: create the work queue: %w", Name, err)
	}
	log.Info("stream converted to a work queue; webhooks are accepted again", "stream", Name)
	return nil
}
