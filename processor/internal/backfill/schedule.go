package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tollgate/tollgate/processor/internal/service"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/tollgate/tollgate/pkg/stream"
)

const (
	// ScheduledOverlap is how far before the last successful scheduled run's start the next run
	// lists again: events can become listable a little after their created time, and the
	// processors' clocks may differ. Events listed twice are no-ops.
	ScheduledOverlap = 10 * time.Minute
	// ScheduledSettle keeps the newest events out of a scheduled run: their webhook is normally
	// on its way, and publishing them first would count them as recovered.
	ScheduledSettle = 2 * time.Minute
	// lockCheckEvery is how often a running scheduled backfill checks that the session holding
	// its lock still answers.
	lockCheckEvery = 15 * time.Second
)

// Metrics are the scheduled backfill's series on the processor's /metrics.
type Metrics struct {
	recovered   prometheus.Counter
	runs        prometheus.Counter
	failures    prometheus.Counter
	lastSuccess prometheus.Gauge
}

func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		recovered: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_processor_backfill_recovered_events_total",
			Help: "Events the scheduled backfill published that Tollgate had not received: webhooks that did not arrive (alert above zero).",
		}),
		runs: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_processor_backfill_runs_total",
			Help: "Scheduled backfill runs this processor started (it held the lock).",
		}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_processor_backfill_failures_total",
			Help: "Scheduled backfill runs of this processor that failed (Stripe API, NATS, Postgres).",
		}),
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_processor_backfill_last_success_timestamp_seconds",
			Help: "When the last successful scheduled backfill of any processor finished (Unix seconds; 0 before the first).",
		}),
	}
}

// Scheduler runs the backfill every interval while the processor serves, one processor at a
// time: a run first takes a Postgres advisory lock (backfillLockKey) on a connection of its own
// and skips when another session holds it. A run lists the events created since the last
// successful scheduled run of any processor began (less scheduledOverlap; defaultSince before the
// first, at most maxSince) until scheduledSettle ago, and publishes those the event store does
// not hold. Events that were new count in tollgate_processor_backfill_recovered_events_total:
// each one is a webhook that did not arrive.
type Scheduler struct {
	interval time.Duration
	types    []string
	events   eventSource
	js       stream.Publisher
	pool     *pgxpool.Pool
	store    *StateStore
	logger   *slog.Logger
	metrics  *Metrics
	owner    string
}

// NewScheduler builds the scheduled backfill of one processor.
func NewScheduler(interval time.Duration, types []string, events eventSource, js stream.Publisher, pool *pgxpool.Pool,
	logger *slog.Logger, m *Metrics,
) *Scheduler {
	host, _ := os.Hostname()
	return &Scheduler{
		interval: interval, types: types, events: events, js: js, pool: pool, store: &StateStore{DB: pool},
		logger: logger, metrics: m, owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), nuid.Next()),
	}
}

// Loop runs a scheduled backfill at once and then interval after each one ends, until ctx is
// done; a run in progress then stops between two events.
func (s *Scheduler) Loop(ctx context.Context) {
	s.logger.Info("scheduled backfill on", "interval", s.interval.String(), "types", s.types)
	service.Every(ctx, s.interval, s.tick)
}

// tick runs one scheduled backfill unless another processor holds the lock.
func (s *Scheduler) tick(ctx context.Context) {
	defer s.showLastSuccess(ctx)
	held, err := acquireLock(ctx, s.pool)
	if errors.Is(err, errLockHeld) {
		s.logger.Info("scheduled backfill skipped: another processor is running it")
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			s.metrics.failures.Inc()
			s.logger.Error("scheduled backfill failed", "error", err)
		}
		return
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		s.watchLock(runCtx, held, cancel)
	}()
	err = s.Run(runCtx)
	cancel(nil)
	<-watched // held's connection is ours alone again
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), SetupTimeout)
	defer rcancel()
	if rerr := held.release(rctx); rerr != nil {
		s.logger.Warn("scheduled backfill: lock released by closing its connection", "error", rerr)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		s.logger.Info("scheduled backfill interrupted by shutdown; the next run lists its window again", "error", err)
	case err != nil:
		s.metrics.failures.Inc()
		s.logger.Error("scheduled backfill failed", "error", err)
	}
}

// watchLock checks the lock's session until ctx is done; if it stopped answering (the lock is
// gone with it, and another processor may take it), it cancels the run.
func (s *Scheduler) watchLock(ctx context.Context, held *heldLock, cancel context.CancelCauseFunc) {
	service.Loop{Interval: lockCheckEvery, Delay: true}.Run(ctx, func(ctx context.Context) service.Next {
		if err := held.Check(ctx); err != nil && ctx.Err() == nil {
			cancel(fmt.Errorf("lost the backfill lock: %w", err))
			return service.Stop
		}
		return service.Wait
	})
}

// Run lists and publishes one scheduled window while holding the lock.
func (s *Scheduler) Run(ctx context.Context) error {
	start := time.Now().UTC()
	s.metrics.runs.Inc()
	last, found, err := s.store.LastScheduled(ctx)
	if err != nil {
		return err
	}
	from := start.Add(-DefaultSince)
	if found {
		from = last.StartedAt.Add(-ScheduledOverlap)
	}
	if oldest := start.Add(-MaxSince); from.Before(oldest) {
		s.logger.Warn("scheduled backfill: the last successful run is older than Stripe keeps events; events before the last 30 days cannot be recovered",
			"last_success", last.StartedAt)
		from = oldest
	}
	cp := &Checkpoint{CreatedGTE: from.Unix(), CreatedLTE: start.Add(-ScheduledSettle).Unix(), StartedAt: start}
	s.logger.Info("scheduled backfill started", "created_gte", time.Unix(cp.CreatedGTE, 0).UTC(), "created_lte", time.Unix(cp.CreatedLTE, 0).UTC())
	b := &Backfiller{
		Events: s.events, Received: s.pool, JS: s.js,
		Warn: func(msg string) { s.logger.Warn("scheduled backfill: " + msg) },
	}
	err = b.Run(ctx, stripeapi.EventQuery{CreatedGTE: cp.CreatedGTE, CreatedLTE: cp.CreatedLTE, Types: s.types}, cp)
	s.metrics.recovered.Add(float64(cp.Counts.New)) // stored, whether or not the run completes
	attrs := []any{"listed", cp.Counts.Listed, "new", cp.Counts.New, "already_had", cp.Counts.AlreadyHad,
		"skipped", cp.Counts.Skipped, "duration", time.Since(start).Round(time.Millisecond).String()}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		return fmt.Errorf("stopped after %s: %w", cp.Counts, err)
	}
	if cp.Counts.New > 0 {
		s.logger.Warn("scheduled backfill finished: recovered events whose webhook did not arrive", attrs...)
	} else {
		s.logger.Info("scheduled backfill finished", attrs...)
	}
	return s.store.saveScheduled(ctx, ScheduledState{StartedAt: start, FinishedAt: time.Now().UTC(), Instance: s.owner, Counts: cp.Counts})
}

// showLastSuccess sets the last-success gauge from the shared state, so every processor reports
// the last successful scheduled run of any of them.
func (s *Scheduler) showLastSuccess(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	last, found, err := s.store.LastScheduled(ctx)
	if err != nil {
		s.logger.Warn("scheduled backfill: last success unknown", "error", err)
		return
	}
	if found {
		s.metrics.lastSuccess.Set(float64(last.FinishedAt.UnixNano()) / 1e9)
	}
}
