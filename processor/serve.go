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

	"github.com/tollgate/tollgate/processor/internal/admin"
	"github.com/tollgate/tollgate/processor/internal/backfill"
	"github.com/tollgate/tollgate/processor/internal/console"
	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/notify"
	"github.com/tollgate/tollgate/processor/internal/pgpool"
	"github.com/tollgate/tollgate/processor/internal/projection"
	"github.com/tollgate/tollgate/processor/internal/repairer"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/subscription"
)

const (
	// shutdownTimeout bounds in-flight HTTP requests once SIGTERM arrived.
	shutdownTimeout = 10 * time.Second
	// drainTimeout bounds the NATS drain after the consumer stopped.
	drainTimeout = 10 * time.Second
	// schemaMaxAge is how long a schema version read stays fresh for readiness (pgpool re-reads
	// it every pgpool.SchemaEvery).
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
	return serveWith(ctx, cfg, rules, ingest.DefaultOptions(), logger)
}

// serveWith is serve with its configuration given, for tests that tune the consumer.
//
// Start order: HTTP first (/healthz answers at once, /readyz says what is missing), then the
// migrations (retried while Postgres does not answer), then the JetStream stream and consumer
// (retried while NATS does not), then consuming. Each wait gives up after startTimeout and the
// process exits non-zero, for its supervisor to restart it.
func serveWith(ctx context.Context, cfg config.Processor, rules subscription.Rules, opts ingest.Options, logger *slog.Logger) error {
	pool, err := pgpool.Open(ctx, cfg.DatabaseURL)
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
	m := projection.NewMetrics(reg)
	var sched *backfill.Scheduler
	if cfg.BackfillInterval > 0 {
		api := stripeapi.New(cfg.Stripe, stripeapi.Options{OnRetry: func(r stripeapi.RetryInfo) {
			logger.Warn("stripe api: retrying", "method", r.Method, "path", r.Path, "status", r.Status,
				"attempt", r.Attempt, "retry_in", r.Wait.String(), "error", r.Err)
		}})
		defer api.Close()
		sched = backfill.NewScheduler(cfg.BackfillInterval, cfg.BackfillTypes, api, js, pool, logger, backfill.NewMetrics(reg))
	}
	notify := notify.New(pool, cfg.NotifyURLs, cfg.NotifySecret, nc, notify.DefaultOptions(), logger, reg) // issue 15
	proj := &projection.Projector{DB: pool, Rules: rules, Cache: projection.NewEventCache(projection.DefaultEventCacheSize), Log: logger, Metrics: m, Notify: notify}
	rep := &repairer.Repairer{DB: pool, JS: js, Log: logger, Metrics: repairer.NewMetrics(reg), Now: time.Now}
	if cfg.Stripe.Key != "" {
		api := stripeapi.New(cfg.Stripe, stripeapi.Options{OnRetry: func(r stripeapi.RetryInfo) {
			logger.Warn("stripe api (repair): retrying", "method", r.Method, "path", r.Path, "status", r.Status,
				"attempt", r.Attempt, "retry_in", r.Wait.String(), "error", r.Err)
		}})
		defer api.Close()
		rep.API = api
	}
	schema := pgpool.NewSchemaCheck(cfg.DatabaseURL, schemaMaxAge)
	var started atomic.Bool
	handler := newServer(reg, logger, natsCheck(nc), postgresCheck(pool), schema.Check, consumerCheck(&started))
	handler = admin.With(handler, cfg.AdminTokens, pool, rules, logger) // issue 15: the admin API, when ADMIN_TOKENS is set
	handler = console.With(handler, console.Deps{Tokens: cfg.AdminTokens, Pool: pool, JS: js, Proj: proj, CanRepair: rep.API != nil, Rules: rules, Log: logger})
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
	if runErr = pgpool.Migrate(runCtx, cfg.DatabaseURL, logger); runErr == nil {
		schema.Refresh()
		wg.Go(func() { pgpool.WatchSchema(runCtx, schema) })
		var cons *ingest.Consumer
		if cons, runErr = ingest.StartConsumer(runCtx, js, stream.Options{Replicas: cfg.StreamReplicas}, pool, proj, opts, logger, m); runErr == nil {
			started.Store(true)
			logger.Info("consuming", "stream", stream.Name, "consumer", opts.Durable)
			wg.Go(func() { ingest.WatchMetrics(runCtx, cons, pool, m, logger) })
			if sched != nil { // the stream exists now; a run in progress stops with the consumer
				wg.Go(func() { sched.Loop(runCtx) })
			}
			wg.Go(func() { rep.Loop(runCtx, repairer.Every) })
			wg.Go(func() { projection.PruneMarks(runCtx, pool, logger) }) // issue 15: read your writes
			// issue 15: deliver the outbox
			if len(cfg.NotifyURLs) > 0 {
				wg.Go(func() { notify.Run(runCtx) })
			}
			runErr = cons.Run(runCtx)
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
