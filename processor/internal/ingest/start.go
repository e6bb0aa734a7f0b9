package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tollgate/tollgate/processor/internal/projection"
	"github.com/tollgate/tollgate/processor/internal/service"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/backoff"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/stream"
)

const (
	// consumerStartTimeout bounds the wait for the JetStream stream and consumer at start; past
	// it the process exits non-zero and its supervisor restarts it.
	consumerStartTimeout = time.Minute
	// watchEvery is how often the consumer's pending count and the dead letters are sampled
	// for /metrics.
	watchEvery = 5 * time.Second
)

// StartConsumer makes sure the stream exists (creating it with the default settings only when
// it is missing: its owner, the listener, may have tuned it; updating it only when streamOpts sets
// replicas, STREAM_REPLICAS, that it does not have, or when it is an earlier release's with a
// MaxAge) and creates the durable consumer, retrying with a capped backoff until it succeeds, ctx
// is done or consumerStartTimeout passed. On a work-queue stream of a development build it consumes
// without updating it (stream.ErrWorkQueue): draining it is the first step of its removal.
func StartConsumer(ctx context.Context, js jetstream.JetStream, streamOpts stream.Options, pool *pgxpool.Pool, proj *projection.Projector,
	opts Options, logger *slog.Logger, m *Metrics) (*Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, consumerStartTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := func() (*Consumer, error) {
			s, err := js.Stream(actx, stream.Name)
			switch {
			case errors.Is(err, jetstream.ErrStreamNotFound),
				err == nil && streamOpts.Replicas > 0 && s.CachedInfo().Config.Replicas != streamOpts.Replicas,
				err == nil && s.CachedInfo().Config.MaxAge != 0:
				_, err := stream.Ensure(actx, js, streamOpts)
				if errors.Is(err, stream.ErrWorkQueue) {
					logger.Warn("stream not updated", "error", err)
				} else if err != nil {
					return nil, err
				}
			case err != nil:
				return nil, fmt.Errorf("look up stream %s: %w", stream.Name, err)
			}
			return NewConsumer(actx, js, pool, proj, opts, logger, m)
		}()
		acancel()
		if err == nil {
			return c, nil
		}
		wait := backoff.Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}.Delay(attempt)
		logger.Warn("JetStream consumer not ready yet; retrying", "attempt", attempt, "retry_in", wait.String(), "error", err)
		_ = backoff.Sleep(ctx, wait)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("JetStream consumer not ready after %d attempts (NATS_URL unreachable or JetStream disabled?): %w",
				attempt, errors.Join(ctx.Err(), err))
		}
	}
}

// WatchMetrics samples the consumer's pending counts, the stream and the dead letters for /metrics.
func WatchMetrics(ctx context.Context, c *Consumer, db eventstore.Querier, m *Metrics, logger *slog.Logger) {
	service.Every(ctx, watchEvery, func(ctx context.Context) {
		qctx, cancel := context.WithTimeout(ctx, watchEvery)
		defer cancel()
		cinfo, err := c.JsConsumer().Info(qctx)
		if err == nil {
			m.Pending.Set(float64(cinfo.NumPending))
			m.AckPending.Set(float64(cinfo.NumAckPending))
		} else if ctx.Err() == nil {
			logger.Debug("consumer info", "error", err)
		}
		if s, err := c.js.Stream(qctx, stream.Name); err == nil {
			observeStream(m, s.CachedInfo())
			if cinfo != nil {
				if oldest, err := OldestUnapplied(qctx, s, cinfo.AckFloor.Stream); err == nil {
					m.OldestAge.Set(AgeAt(oldest, time.Now()))
				} else if ctx.Err() == nil {
					logger.Debug("oldest unapplied event", "error", err)
				}
			}
		}
		if n, err := eventstore.CountDeadLetters(qctx, db); err == nil {
			m.DeadLetters.Set(float64(n))
		}
	})
}

// observeStream sets the stream's size gauges from its info.
func observeStream(m *Metrics, info *jetstream.StreamInfo) {
	m.StreamBytes.Set(float64(info.State.Bytes))
	m.StreamLimit.Set(float64(info.Config.MaxBytes))
}

// OldestUnapplied is when the oldest unapplied event was stored: the first message of the stream
// above the consumer's ack floor (every message at or below it is acknowledged; the purge after
// each batch may leave a few of them in the stream, so its first message would overstate the
// age). It is the zero time when there is none.
func OldestUnapplied(ctx context.Context, s jetstream.Stream, ackFloor uint64) (time.Time, error) {
	msg, err := s.GetMsg(ctx, ackFloor+1, jetstream.WithGetMsgSubject(stream.AllSubjects))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("oldest unapplied event: %w", err)
	}
	return msg.Time, nil
}

// AgeAt is the age in seconds at now of an event stored at stored, 0 for the zero time.
func AgeAt(stored, now time.Time) float64 {
	if stored.IsZero() {
		return 0
	}
	return max(now.Sub(stored).Seconds(), 0)
}
