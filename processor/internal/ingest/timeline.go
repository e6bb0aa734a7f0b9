package ingest

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/failover"
	"github.com/tollgate/tollgate/processor/internal/projection"
	"github.com/tollgate/tollgate/processor/internal/service"
)

// TimelineEvery is how often the processor asks whether the database moved to a new timeline
// (a standby promoted, a backup restored): one small query.
const TimelineEvery = 2 * time.Second

// WatchTimeline checks the database's timeline at once and every TimelineEvery until ctx is
// done. On a new one it re-applies the events the stream retains (STREAM_RETAIN_APPLIED) before
// it records the timeline (failover.Check): a standby promoted under asynchronous replication
// lacks the primary's last commits, which the processor had acknowledged, and this gives them
// back. Failures (Postgres or NATS away) are retried at the next tick.
func WatchTimeline(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, proj *projection.Projector, logger *slog.Logger) {
	failing := false
	service.Loop{Interval: TimelineEvery}.Run(ctx, func(ctx context.Context) service.Next {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := failover.Check(cctx, pool, func(ctx context.Context, c failover.Change) error {
			logger.Warn("the database is on a new timeline (a standby was promoted, or a backup restored): "+
				"re-applying the events the stream retains", "from_timeline", c.From, "to_timeline", c.To)
			start := time.Now()
			r, err := failover.Regain(ctx, js, pool, time.Time{}, RegainApply(proj, logger))
			if err == nil {
				logger.Warn("events re-applied from the stream after the timeline change", "read", r.Read,
					"missing_and_applied", r.Missing, "took", time.Since(start).Round(time.Millisecond).String())
			}
			return err
		})
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			logger.Warn("database timeline check failed; retrying", "error", err)
		case err == nil:
			failing = false
		}
		return service.Wait
	})
}

// RegainApply stores and derives events read back from the stream (failover.Regain), as the
// consumer does. An event that cannot be admitted is left out: the consumer dead-lettered it
// when it came.
func RegainApply(proj *projection.Projector, logger *slog.Logger) func(context.Context, [][]byte) error {
	return func(ctx context.Context, raws [][]byte) error {
		events := make([]projection.Admitted, 0, len(raws))
		for _, raw := range raws {
			a, err := projection.Admit(raw)
			if err != nil {
				logger.Warn("retained event not re-applied: it cannot be applied", "event", EventIDOf(raw), "error", err)
				continue
			}
			events = append(events, a)
		}
		if len(events) == 0 {
			return nil
		}
		_, err := proj.Apply(ctx, projection.Input{Events: events})
		return err
	}
}
