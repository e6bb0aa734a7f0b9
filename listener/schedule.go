package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

const (
	// scheduledOverlap is how far before the last successful scheduled run's start the next run
	// lists again: events can become listable a little after their created time, and the
	// listeners' clocks may differ. Events listed twice are no-ops.
	scheduledOverlap = 10 * time.Minute
	// scheduledSettle keeps the newest events out of a scheduled run: their webhook is normally
	// on its way, and publishing them first would count them as recovered.
	scheduledSettle = 2 * time.Minute
	// lockRefresh is how often a running scheduled backfill rewrites its lock (well within lockTTL).
	lockRefresh = lockTTL / 4
)

// scheduler runs the backfill every interval while the listener serves, one listener at a time:
// a run first takes the lock in NATS KV (lockBucket) and skips when another listener holds it.
// A run lists the events created since the last successful scheduled run of any listener began
// (less scheduledOverlap; defaultSince before the first, at most maxSince) until
// scheduledSettle ago, and publishes them like the webhook does. Events that were new count in
// tollgate_listener_backfill_recovered_events_total: each one is a webhook that did not arrive.
type scheduler struct {
	interval       time.Duration
	types          []string
	events         eventSource
	js             jetstream.JetStream
	publishTimeout time.Duration
	logger         *slog.Logger
	metrics        *backfillMetrics
	owner          string

	store *stateStore // opened on the first tick that can
	lock  *lock
}

// newScheduler builds the scheduled backfill of one listener.
func newScheduler(interval time.Duration, types []string, events eventSource, js jetstream.JetStream,
	publishTimeout time.Duration, logger *slog.Logger, m *backfillMetrics,
) *scheduler {
	host, _ := os.Hostname()
	return &scheduler{
		interval: interval, types: types, events: events, js: js, publishTimeout: publishTimeout,
		logger: logger, metrics: m, owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), nuid.Next()),
	}
}

// loop runs a scheduled backfill at once and then interval after each one ends, until ctx is
// done; a run in progress then stops between two events.
func (s *scheduler) loop(ctx context.Context) {
	s.logger.Info("scheduled backfill on", "interval", s.interval.String(), "types", s.types)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.tick(ctx)
		t.Reset(s.interval)
	}
}

// tick runs one scheduled backfill unless another listener holds the lock.
func (s *scheduler) tick(ctx context.Context) {
	if err := s.open(ctx); err != nil {
		s.metrics.failures.Inc()
		s.logger.Error("scheduled backfill failed", "error", err)
		return
	}
	defer s.showLastSuccess(ctx)
	held, err := s.lock.acquire(ctx)
	if errors.Is(err, errLockHeld) {
		s.logger.Info("scheduled backfill skipped: another listener is running it")
		return
	}
	if err != nil {
		s.metrics.failures.Inc()
		s.logger.Error("scheduled backfill failed", "error", err)
		return
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		s.keepLock(runCtx, held, cancel)
	}()
	err = s.run(runCtx)
	cancel(nil)
	<-refreshed // held is ours again
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), setupTimeout)
	defer rcancel()
	if rerr := held.release(rctx); rerr != nil {
		s.logger.Warn("scheduled backfill: lock not released; it expires by itself", "ttl", lockTTL.String(), "error", rerr)
	}
	switch {
	case err != nil && ctx.Err() != nil:
		s.logger.Info("scheduled backfill interrupted by shutdown; the next run lists its window again", "error", err)
	case err != nil:
		s.metrics.failures.Inc()
		s.logger.Error("scheduled backfill failed", "error", err)
	}
}

// keepLock refreshes the lock until ctx is done; if the lock was lost, it cancels the run.
func (s *scheduler) keepLock(ctx context.Context, held *heldLock, cancel context.CancelCauseFunc) {
	t := time.NewTicker(lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := held.refresh(ctx); err != nil && ctx.Err() == nil {
			cancel(fmt.Errorf("lost the backfill lock: %w", err))
			return
		}
	}
}

// run lists and publishes one scheduled window while holding the lock.
func (s *scheduler) run(ctx context.Context) error {
	start := time.Now().UTC()
	s.metrics.runs.Inc()
	last, found, err := s.store.lastScheduled(ctx)
	if err != nil {
		return err
	}
	from := start.Add(-defaultSince)
	if found {
		from = last.StartedAt.Add(-scheduledOverlap)
	}
	if oldest := start.Add(-maxSince); from.Before(oldest) {
		s.logger.Warn("scheduled backfill: the last successful run is older than Stripe keeps events; events before the last 30 days cannot be recovered",
			"last_success", last.StartedAt)
		from = oldest
	}
	cp := &checkpoint{CreatedGTE: from.Unix(), CreatedLTE: start.Add(-scheduledSettle).Unix(), StartedAt: start}
	s.logger.Info("scheduled backfill started", "created_gte", time.Unix(cp.CreatedGTE, 0).UTC(), "created_lte", time.Unix(cp.CreatedLTE, 0).UTC())
	b := &backfiller{
		events: s.events, js: s.js, publishTimeout: s.publishTimeout,
		warn: func(msg string) { s.logger.Warn("scheduled backfill: " + msg) },
	}
	err = b.run(ctx, eventQuery{CreatedGTE: cp.CreatedGTE, CreatedLTE: cp.CreatedLTE, Types: s.types}, cp)
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
	return s.store.saveScheduled(ctx, scheduledState{StartedAt: start, FinishedAt: time.Now().UTC(), Instance: s.owner, Counts: cp.Counts})
}

// open creates the KV buckets once.
func (s *scheduler) open(ctx context.Context) error {
	if s.store != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	store, err := openStateStore(ctx, s.js)
	if err != nil {
		return err
	}
	l, err := openLock(ctx, s.js, s.owner)
	if err != nil {
		return err
	}
	s.store, s.lock = store, l
	return nil
}

// showLastSuccess sets the last-success gauge from the shared state, so every listener reports
// the last successful scheduled run of any of them.
func (s *scheduler) showLastSuccess(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	last, found, err := s.store.lastScheduled(ctx)
	if err != nil {
		s.logger.Warn("scheduled backfill: last success unknown", "error", err)
		return
	}
	if found {
		s.metrics.lastSuccess.Set(float64(last.FinishedAt.UnixNano()) / 1e9)
	}
}
