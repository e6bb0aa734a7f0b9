package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/processor/internal/admin"
	"github.com/tollgate/tollgate/processor/internal/backfill"
	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/console"
	"github.com/tollgate/tollgate/processor/internal/health"
	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/notify"
	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/pgpool"
	"github.com/tollgate/tollgate/processor/internal/projection"
	"github.com/tollgate/tollgate/processor/internal/repairer"
	"github.com/tollgate/tollgate/processor/internal/service"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/nats-io/nats.go/jetstream"

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
	// grantExpiryMaxWait is the longest the grant expiry sleeps between two looks: a grant given
	// on another instance is seen within it, so it expires well within the contract's 2 s of its
	// until. Each look is one indexed query.
	grantExpiryMaxWait = 500 * time.Millisecond
	// grantExpiryBatch is how many grants one expiry transaction ends.
	grantExpiryBatch = 100
)

// serve runs the processor until ctx is done, then finishes the batch in progress (commit,
// acknowledgments), stops the HTTP server, drains NATS and returns nil.
func serve(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, rules, err := cli.LoadConfig(getenv)
	if err != nil {
		return err
	}
	opts := ingest.DefaultOptions()
	opts.RetainApplied = cfg.RetainApplied
	return serveWith(ctx, cfg, rules, opts, logger)
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
	conn, err := natsconn.Connect(cfg.NATSURL, "tollgate-processor", "consuming pauses until it is back", logger, natsconn.Creds(cfg.NATSCreds)...)
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

	reg := health.NewRegistry()
	m := ingest.NewMetrics(reg)
	var sched *backfill.Scheduler
	if cfg.BackfillInterval > 0 {
		api := stripeapi.New(cfg.Stripe, stripeapi.Options{OnRetry: stripeapi.LogRetries(logger, "stripe api: retrying")})
		defer api.Close()
		sched = backfill.NewScheduler(cfg.BackfillInterval, cfg.BackfillTypes, api, js, pool, logger, backfill.NewMetrics(reg))
	}
	notifier := notify.New(pool, cfg.NotifyURLs, cfg.NotifySecret, nc, notify.DefaultOptions(), logger, reg)
	proj := &projection.Projector{DB: pool, Rules: rules, Cache: projection.NewEventCache(projection.DefaultEventCacheSize), Log: logger, Metrics: projection.NewMetrics(reg), Notify: notifier}
	rep := &repairer.Repairer{DB: pool, JS: js, Log: logger, Metrics: repairer.NewMetrics(reg), Now: time.Now}
	if cfg.Stripe.Key != "" {
		api := stripeapi.New(cfg.Stripe, stripeapi.Options{OnRetry: stripeapi.LogRetries(logger, "stripe api (repair): retrying")})
		defer api.Close()
		rep.API = api
	}
	schema := pgpool.NewSchemaCheck(cfg.DatabaseURL, schemaMaxAge)
	var started atomic.Bool
	handler := health.NewServer(reg, logger, health.NATSCheck(nc), health.PostgresCheck(pool), schema.Check, health.ConsumerCheck(&started))
	handler = admin.With(handler, cfg.Admins, pool, proj, logger)
	history := &operate.History{} // the pipeline page's charts: the last hour, in memory
	handler = console.With(handler, console.Deps{Admins: cfg.Admins, Pool: pool, JS: js, Proj: proj, CanRepair: rep.API != nil, Rules: rules, Log: logger, History: history})
	srv := health.NewHTTPServer(handler, logger)
	logger.Info("listening", "addr", ln.Addr().String(), "batch_size", opts.BatchSize,
		"user_id_metadata_key", rules.UserIDMetadataKey, "past_due_grants", rules.PastDueGrants, "plans", len(rules.Plans),
		"plans_with_limits", len(rules.Limits))

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

	var bg service.Group
	var runErr error
	if runErr = pgpool.StartSchema(runCtx, cfg.DatabaseURL, pool, rules, logger); runErr == nil {
		schema.Refresh()
		bg.Start(runCtx, service.Service{Name: "schema", Run: schema.Watch})
		var cons *ingest.Consumer
		if cons, runErr = ingest.StartConsumer(runCtx, js, stream.Options{Replicas: cfg.StreamReplicas}, pool, proj, opts, logger, m); runErr == nil {
			started.Store(true)
			logger.Info("consuming", "stream", stream.Name, "consumer", opts.Durable)
			// The services that need the stream and the schema; they stop with the consumer.
			services := []service.Service{
				{Name: "consumer metrics", Run: func(ctx context.Context) { ingest.WatchMetrics(ctx, cons, pool, m, logger) }},
				{Name: "pipeline history", Run: func(ctx context.Context) { operate.KeepHistory(ctx, pool, js, history) }},
				{Name: "repairs", Run: func(ctx context.Context) { rep.Loop(ctx, repairer.Every) }},
				{Name: "applied marks", Run: func(ctx context.Context) { projection.PruneMarks(ctx, pool, logger) }},
				{Name: "database timeline", Run: func(ctx context.Context) { ingest.WatchTimeline(ctx, pool, js, proj, logger) }},
				// Every instance runs it; each due grant is expired by exactly one of them.
				{Name: "grant expiry", Run: (&operate.GrantExpiry{Proj: proj, Q: pool, Log: logger, Batch: grantExpiryBatch, MaxWait: grantExpiryMaxWait}).Run},
			}
			if sched != nil { // a run in progress stops between two events
				services = append(services, service.Service{Name: "scheduled backfill", Run: sched.Loop})
			}
			if len(cfg.NotifyURLs) > 0 {
				services = append(services, service.Service{Name: "notifications", Run: notifier.Run})
			}
			bg.Start(runCtx, services...)
			runErr = cons.Run(runCtx)
		}
	}
	if runErr != nil && ctx.Err() != nil {
		runErr = nil // stopped while starting: not a failure
	}
	lostErr := natsconn.LostCause(runCtx)
	stop(nil)
	logger.Info("consumer stopped; shutting down")
	bg.Wait()
	err = errors.Join(lostErr, runErr, <-httpDone, conn.DrainWait(drainTimeout))
	if err == nil {
		logger.Info("stopped")
	}
	return err
}
