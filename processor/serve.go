package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/migrations"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/subscription"
)

const (
	// startTimeout bounds the wait for the JetStream stream and consumer at start; past it the
	// process exits non-zero and its supervisor restarts it.
	startTimeout = time.Minute
	// shutdownTimeout bounds in-flight HTTP requests once SIGTERM arrived.
	shutdownTimeout = 10 * time.Second
	// drainTimeout bounds the NATS drain after the consumer stopped.
	drainTimeout = 10 * time.Second
	// watchEvery is how often the consumer's pending count and the dead letters are sampled for
	// /metrics; the schema version is read every schemaEvery and is stale for readiness after
	// schemaMaxAge.
	watchEvery   = 5 * time.Second
	schemaEvery  = 15 * time.Second
	schemaMaxAge = time.Minute
)

// serve runs the processor until ctx is done, then finishes the batch in progress (commit,
// acknowledgments), stops the HTTP server, drains NATS and returns nil.
func serve(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, rules, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	return serveWith(ctx, cfg, rules, defaultConsumerOptions(), logger)
}

// serveWith is serve with its configuration given, for tests that tune the consumer.
//
// Start order: HTTP first (/healthz answers at once, /readyz says what is missing), then the
// migrations (retried while Postgres does not answer), then the JetStream stream and consumer
// (retried while NATS does not), then consuming. Each wait gives up after startTimeout and the
// process exits non-zero, for its supervisor to restart it.
func serveWith(ctx context.Context, cfg config.Processor, rules subscription.Rules, opts consumerOptions, logger *slog.Logger) error {
	pool, err := openPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	conn, err := natsconn.Connect(cfg.NATSURL, "tollgate-processor", "consuming pauses until it is back", logger)
	if err != nil {
		return err
	}
	nc := conn.Conn
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		nc.Close()
		return fmt.Errorf("HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}

	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	var sched *scheduler
	if cfg.BackfillInterval > 0 {
		api := newStripeAPI(cfg.Stripe, apiOptions{OnRetry: func(r retryInfo) {
			logger.Warn("stripe api: retrying", "method", r.Method, "path", r.Path, "status", r.Status,
				"attempt", r.Attempt, "retry_in", r.Wait.String(), "error", r.Err)
		}})
		defer api.close()
		sched = newScheduler(cfg.BackfillInterval, cfg.BackfillTypes, api, js, pool, logger, newBackfillMetrics(reg))
	}
	notify := newNotifier(pool, cfg.NotifyURLs, cfg.NotifySecret, nc, defaultNotifyOptions(), logger, reg) // issue 15
	proj := &projector{db: pool, rules: rules, cache: newEventCache(defaultEventCacheSize), log: logger, metrics: m, notify: notify}
	rep := &repairer{db: pool, js: js, log: logger, metrics: newRepairMetrics(reg), now: time.Now}
	if cfg.Stripe.Key != "" {
		api := newStripeAPI(cfg.Stripe, apiOptions{OnRetry: func(r retryInfo) {
			logger.Warn("stripe api (repair): retrying", "method", r.Method, "path", r.Path, "status", r.Status,
				"attempt", r.Attempt, "retry_in", r.Wait.String(), "error", r.Err)
		}})
		defer api.close()
		rep.api = api
	}
	schema := newSchemaCheck(cfg.DatabaseURL, schemaMaxAge)
	var started atomic.Bool
	handler := newServer(reg, logger, natsCheck(nc), postgresCheck(pool), schema.check, consumerCheck(&started))
	handler = withAdmin(handler, cfg.AdminTokens, pool, rules, logger) // issue 15: the admin API, when ADMIN_TOKENS is set
	handler = withConsole(handler, consoleDeps{Tokens: cfg.AdminTokens, Pool: pool, JS: js, Proj: proj, CanRepair: rep.api != nil, Rules: rules, Log: logger})
	srv := newHTTPServer(handler, logger)
	logger.Info("listening", "addr", ln.Addr().String(), "batch_size", opts.BatchSize,
		"user_id_metadata_key", rules.UserIDMetadataKey, "past_due_grants", rules.PastDueGrants, "plans", len(rules.Plans))

	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	httpDone := make(chan error, 1)
	go func() {
		err := httpx.Serve(runCtx, srv, ln, shutdownTimeout)
		if err != nil {
			stop(err)
		}
		httpDone <- err
	}()

	go natsconn.StopOnLost(runCtx, conn, stop)

	var wg sync.WaitGroup
	var runErr error
	if runErr = migrate(runCtx, cfg.DatabaseURL, logger); runErr == nil {
		schema.refresh()
		wg.Go(func() { watchSchema(runCtx, schema) })
		var cons *consumer
		if cons, runErr = startConsumer(runCtx, js, stream.Options{Replicas: cfg.StreamReplicas}, pool, proj, opts, logger, m); runErr == nil {
			started.Store(true)
			logger.Info("consuming", "stream", stream.Name, "consumer", opts.Durable)
			wg.Go(func() { watchMetrics(runCtx, cons, pool, m, logger) })
			if sched != nil { // the stream exists now; a run in progress stops with the consumer
				wg.Go(func() { sched.loop(runCtx) })
			}
			wg.Go(func() { rep.loop(runCtx, repairEvery) })
			wg.Go(func() { pruneMarks(runCtx, pool, logger) }) // issue 15: read your writes
			// issue 15: deliver the outbox
			if len(cfg.NotifyURLs) > 0 {
				wg.Go(func() { notify.run(runCtx) })
			}
			runErr = cons.run(runCtx)
		}
	}
	if runErr != nil && ctx.Err() != nil {
		runErr = nil // stopped while starting: not a failure
	}
	lostErr := natsconn.LostCause(runCtx)
	stop(nil)
	logger.Info("consumer stopped; shutting down")
	wg.Wait()
	err = errors.Join(lostErr, runErr, <-httpDone, conn.DrainWait(drainTimeout))
	if err == nil {
		logger.Info("stopped")
	}
	return err
}

// migrate applies pending migrations, retrying with a capped backoff while Postgres cannot be
// reached, until it succeeds, ctx is done or startTimeout passed. Any other failure (SQL error,
// dirty schema) is not retried.
func migrate(ctx context.Context, databaseURL string, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := migrations.Up(withConnectTimeout(databaseURL))
		if err == nil {
			logger.Info("schema ready", "version", migrations.Version)
			return nil
		}
		var connectErr *pgconn.ConnectError
		if !errors.As(err, &connectErr) || ctx.Err() != nil {
			return fmt.Errorf("DATABASE_URL: apply migrations (attempt %d): %w", attempt, err)
		}
		logger.Warn("cannot apply migrations yet; retrying", "attempt", attempt, "retry_in", wait.String(), "error", err)
		sleep(ctx, wait)
		if ctx.Err() != nil {
			return fmt.Errorf("DATABASE_URL: Postgres did not answer within %s: %w", startTimeout, err)
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// startConsumer makes sure the stream exists (creating it with the default settings only when
// it is missing: its owner, the listener, may have tuned it; updating it only when streamOpts sets
// replicas, STREAM_REPLICAS, that it does not have, or when it is an earlier release's with a
// MaxAge) and creates the durable consumer, retrying with a capped backoff until it succeeds, ctx
// is done or startTimeout passed. On a work-queue stream of a development build it consumes
// without updating it (stream.ErrWorkQueue): draining it is the first step of its removal.
func startConsumer(ctx context.Context, js jetstream.JetStream, streamOpts stream.Options, pool *pgxpool.Pool, proj *projector,
	opts consumerOptions, logger *slog.Logger, m *metrics) (*consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := func() (*consumer, error) {
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
			return newConsumer(actx, js, pool, proj, opts, logger, m)
		}()
		acancel()
		if err == nil {
			return c, nil
		}
		logger.Warn("JetStream consumer not ready yet; retrying", "attempt", attempt, "retry_in", wait.String(), "error", err)
		sleep(ctx, wait)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("JetStream consumer not ready after %d attempts (NATS_URL unreachable or JetStream disabled?): %w",
				attempt, errors.Join(ctx.Err(), err))
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// watchMetrics samples the consumer's pending counts, the stream and the dead letters for /metrics.
func watchMetrics(ctx context.Context, c *consumer, db eventstore.Querier, m *metrics, logger *slog.Logger) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, watchEvery)
		cinfo, err := c.jsConsumer().Info(qctx)
		if err == nil {
			m.pending.Set(float64(cinfo.NumPending))
			m.ackPending.Set(float64(cinfo.NumAckPending))
		} else if ctx.Err() == nil {
			logger.Debug("consumer info", "error", err)
		}
		if s, err := c.js.Stream(qctx, stream.Name); err == nil {
			observeStream(m, s.CachedInfo())
			if cinfo != nil {
				if oldest, err := oldestUnapplied(qctx, s, cinfo.AckFloor.Stream); err == nil {
					m.oldestAge.Set(ageAt(oldest, time.Now()))
				} else if ctx.Err() == nil {
					logger.Debug("oldest unapplied event", "error", err)
				}
			}
		}
		if n, err := eventstore.CountDeadLetters(qctx, db); err == nil {
			m.deadLetters.Set(float64(n))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observeStream sets the stream's size gauges from its info.
func observeStream(m *metrics, info *jetstream.StreamInfo) {
	m.streamBytes.Set(float64(info.State.Bytes))
	m.streamLimit.Set(float64(info.Config.MaxBytes))
}

// oldestUnapplied is when the oldest unapplied event was stored: the first message of the stream
// above the consumer's ack floor (every message at or below it is acknowledged; the purge after
// each batch may leave a few of them in the stream, so its first message would overstate the
// age). It is the zero time when there is none.
func oldestUnapplied(ctx context.Context, s jetstream.Stream, ackFloor uint64) (time.Time, error) {
	msg, err := s.GetMsg(ctx, ackFloor+1, jetstream.WithGetMsgSubject(stream.AllSubjects))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("oldest unapplied event: %w", err)
	}
	return msg.Time, nil
}

// ageAt is the age in seconds at now of an event stored at stored, 0 for the zero time.
func ageAt(stored, now time.Time) float64 {
	if stored.IsZero() {
		return 0
	}
	return max(now.Sub(stored).Seconds(), 0)
}

// watchSchema re-reads the schema version periodically, for readiness.
func watchSchema(ctx context.Context, s *schemaCheck) {
	t := time.NewTicker(schemaEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.refresh()
		}
	}
}
