package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/httpx"
)

// Timeouts of the HTTP server. WriteTimeout bounds a whole answer; the database read inside it
// has its own, shorter deadline (options.dbTimeout).
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	// writeTimeout is above maxWaitTimeout: a wait_for held for its whole 10 s still has time to
	// read the answer and write it (a write timeout of 10 s once cut such answers off empty).
	writeTimeout    = maxWaitTimeout + 10*time.Second
	idleTimeout     = 2 * time.Minute
	shutdownTimeout = 15 * time.Second
)

// options are the tuning knobs of one instance. Only cache comes from environment variables
// (config.QueryAPI.Cache, which serve copies in); the other defaults are the contract
// (fail-open followed within 2 s). Tests shorten them.
type options struct {
	// dbTimeout bounds one read of the read model.
	dbTimeout time.Duration
	// failOpenTimeout bounds the read of the real data behind a fail-open answer: while the
	// switch is on, a slow database must not delay the grant.
	failOpenTimeout time.Duration
	// cache is the mode, max age, byte budget and warm count of the cache (QUERYAPI_CACHE_*).
	cache config.QueryAPICache
	// warmTimeout bounds the read that warms the cache.
	warmTimeout time.Duration
	// pollInterval is how often the fail-open switch is read even without a notification.
	pollInterval time.Duration
	// warnEvery is how often a warning is logged while fail-open is on.
	warnEvery time.Duration
	// reconnectMax caps the backoff between attempts to re-establish LISTEN.
	reconnectMax time.Duration
	// catalogueInterval is how often the flag catalogue is read even without a notification.
	catalogueInterval time.Duration
}

func defaultOptions() options {
	return options{
		dbTimeout:       time.Second,
		failOpenTimeout: 250 * time.Millisecond,
		cache: config.QueryAPICache{Mode: config.CacheNotify, MaxAge: config.DefaultCacheMaxAge,
			Bytes: config.DefaultCacheBytes, Warm: config.DefaultCacheWarm},
		warmTimeout:  30 * time.Second,
		pollInterval: time.Second,
		warnEvery:    time.Minute,
		reconnectMax: 5 * time.Second,
		// The catalogue changes when a processor starts with another PLANS_FILE or a grant names
		// something new, and each change notifies: the poll only bounds a lost notification.
		catalogueInterval: 10 * time.Second,
	}
}

// app is one running instance: the read-only pool, the cache and its LISTEN session, the
// fail-open follower, and the HTTP handler over them.
type app struct {
	handler *echo.Echo
	pool    *pgxpool.Pool
	cache   *cache
	sw      *failOpenSwitch
	flags   *flagCatalogue
	waits   *waiters // read your writes: the ?wait_for= requests
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// startApp wires an instance and starts its background work (LISTEN, switch polling). It does
// not wait for Postgres: an instance that starts before its database reports 503 on /readyz
// until the database answers. close stops everything.
func startApp(ctx context.Context, cfg config.QueryAPI, opts options, logger *slog.Logger, reg *prometheus.Registry) (*app, error) {
	pool, err := openReadOnlyPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	db := dbReader{q: pool, timeout: opts.dbTimeout}
	c := newCache(db, opts.cache.Mode, opts.cache.MaxAge, opts.cache.Bytes, m)
	if err := errors.Join(
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_queryapi_cache_entries",
			Help: "Answers held in the in-process cache.",
		}, func() float64 { return float64(c.len()) })),
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_queryapi_cache_bytes",
			Help: "Estimated heap held by the cache's answers: what QUERYAPI_CACHE_BYTES bounds.",
		}, func() float64 { return float64(c.size()) })),
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_queryapi_cache_budget_bytes",
			Help: "QUERYAPI_CACHE_BYTES: the budget of tollgate_queryapi_cache_bytes.",
		}, func() float64 { return float64(opts.cache.Bytes) })),
	); err != nil {
		pool.Close()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	sw := newFailOpenSwitch(pool, opts.pollInterval, opts.warnEvery, logger, m.failOpen)

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	// The catalogue is read in the background, nobody waiting: it gets more time than a request.
	flags := newFlagCatalogue(pool, opts.catalogueInterval, 5*opts.dbTimeout, logger)
	a := &app{pool: pool, cache: c, sw: sw, flags: flags, cancel: cancel}
	// One read before serving, so an instance started while fail-open is on grants at once.
	first, cancelFirst := context.WithTimeout(ctx, 2*time.Second)
	if err := sw.refresh(first); err != nil {
		logger.Warn("could not read the fail-open switch yet; assuming off until Postgres answers", "err", err)
	}
	// And the flag catalogue, so that /ofrep knows its flags from the first request.
	if err := flags.refresh(first); err != nil {
		logger.Warn("could not read the flag catalogue yet; /ofrep knows only premium, status and each answer's own names until Postgres answers", "err", err)
	}
	cancelFirst()
	a.wg.Add(1)
	go func() { defer a.wg.Done(); flags.run(bg) }()

	// Read your writes: waiters are woken by the LISTEN session; a hot standby has none, so there
	// they poll the replica's marks.
	waits := newWaiters(dbMarks{q: pool}, defaultMaxWaiters, len(cfg.Tokens), c)
	a.waits = waits
	warm := func(ctx context.Context) { c.startWarm(ctx, db, opts.cache.Warm, opts.warmTimeout, logger) }
	if opts.cache.Mode == config.CacheMaxAge {
		// A hot standby refuses LISTEN: the cache serves without notifications, max age being the
		// bound, and the switch is followed by polling alone.
		warm(bg)
		a.wg.Add(1)
		go func() { defer a.wg.Done(); sw.run(bg) }()
	} else {
		connConfig := listenConnConfig(pool)
		l := &notifyListener{
			connect:      func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, connConfig) },
			cache:        c,
			sw:           sw,
			flags:        flags,
			waits:        waits,
			logger:       logger,
			reconnectMax: opts.reconnectMax,
		}
		if opts.cache.Mode == config.CacheNotify {
			l.warm = warm
		}
		a.wg.Add(2)
		go func() { defer a.wg.Done(); l.run(bg) }()
		go func() { defer a.wg.Done(); sw.run(bg) }()
	}

	a.handler = newServer(serverDeps{
		reader:          c,
		failOpen:        sw,
		flags:           flags,
		ready:           &readiness{q: pool, sw: sw, cache: c, log: logger},
		tokens:          cfg.Tokens,
		livemode:        cfg.Livemode,
		logger:          logger,
		metrics:         m,
		gatherer:        reg,
		failOpenTimeout: opts.failOpenTimeout,
		waits:           waits,
	})
	return a, nil
}

// close stops the background work, waits for it and closes the pool.
func (a *app) close() {
	a.cancel()
	a.wg.Wait()
	a.cache.wait()
	a.pool.Close()
}

// serve runs the HTTP server until ctx is done, then drains in-flight requests.
func serve(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := config.LoadQueryAPI(getenv)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil)).With("service", "queryapi")
	reg := prometheus.NewRegistry()
	if err := errors.Join(
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	opts := defaultOptions()
	opts.cache = cfg.Cache
	a, err := startApp(ctx, cfg, opts, logger, reg)
	if err != nil {
		return err
	}
	defer a.close()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("queryapi serving", "addr", ln.Addr().String(), "tokens", len(cfg.Tokens))
	if err := httpx.Serve(ctx, srv, ln, shutdownTimeout); err != nil {
		return err
	}
	logger.Info("queryapi stopped")
	return nil
}

// healthcheck asks the /readyz of the instance at HTTP_ADDR (the container's health check).
func healthcheck(ctx context.Context, getenv func(string) string) error {
	addr := getenv("HTTP_ADDR")
	if addr == "" {
		addr = config.DefaultQueryAPIAddr
	}
	return httpx.Probe(ctx, addr)
}
