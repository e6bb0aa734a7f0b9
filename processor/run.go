package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/migrations"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/probe"
	"github.com/tollgate/tollgate/pkg/subscription"
)

const usage = `Usage: processor [command]

Commands:
  serve                        apply events from JetStream to the event store and the
                               entitlement read model (default); with BACKFILL_INTERVAL, also
                               run the backfill on that timer (one processor at a time); with
                               STRIPE_API_KEY, repair thin events and the like from the API
  migrate                      apply pending database migrations and exit
  replay --customer ID         re-derive one customer's read model from its stored history
  replay --all                 re-derive every customer's read model from stored history
  dlq list                     show dead-lettered events
  dlq redrive [EVENT_ID]       re-process dead-lettered events (all, or one event's)
  backfill                     pull events from the Stripe API and publish those the event store
                               does not hold [--since 72h] [--undelivered] [--types t1,t2]
                               [--rate 25] [--restart]
  reconcile                    compare the read model's subscriptions with Stripe's and print the
                               drift; exit 0 without drift, 2 with drift [--customer ID] [--rate 25];
                               --repair applies each drifted subscription as snapshot events and
                               compares again [--wait 1m]
  explain ID                   print why a customer's (cus_…) or user's answer is what it is: every
                               stored event in derivation order with the answer after it
                               [--livemode=false] [--account acct_…]
  healthcheck                  exit 0 when the processor on HTTP_ADDR answers /readyz with 200
  help                         print this help (processor COMMAND -h for a command's flags)

replay, dlq redrive, backfill and reconcile are safe while serve runs.
Configuration comes from environment variables (HTTP_ADDR, NATS_URL, STREAM_REPLICAS, DATABASE_URL,
USER_ID_METADATA_KEY, PAST_DUE_GRANTS, PLANS_FILE; STRIPE_API_KEY, STRIPE_API_BASE,
BACKFILL_INTERVAL, BACKFILL_TYPES for backfill, reconcile and repair; ADMIN_TOKENS, NOTIFY_URLS,
NOTIFY_SECRET); see the README.
Exit status: 0 done; 1 failure; 2 a usage error, or drift found by reconcile (whose own flag
errors exit 1, so that its 2 always means drift).
`

// errUsage is wrapped by errors in how the processor was invoked (exit status 2).
var errUsage = errors.New("usage")

// run dispatches on the first argument; no argument means serve. It returns when the command is
// done or, for serve, after a graceful shutdown once ctx is cancelled.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd, rest := "serve", args
	if len(args) > 0 {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(rest) > 0 {
			return fmt.Errorf("%w: serve takes no arguments, got %q", errUsage, strings.Join(rest, " "))
		}
		return serve(ctx, getenv, stderr)
	case "migrate":
		if len(rest) > 0 {
			return fmt.Errorf("%w: migrate takes no arguments, got %q", errUsage, strings.Join(rest, " "))
		}
		return migrateCmd(getenv, stdout)
	case "replay":
		return replayCmd(ctx, rest, getenv, stdout, stderr)
	case "dlq":
		return dlqCmd(ctx, rest, getenv, stdout, stderr)
	case "backfill":
		return backfillCmd(ctx, rest, getenv, stdout, stderr)
	case "reconcile":
		return reconcileCmd(ctx, rest, getenv, stdout, stderr)
	case "explain": // issue 15
		return explainCmd(ctx, rest, getenv, stdout, stderr)
	case "healthcheck":
		addr := getenv("HTTP_ADDR")
		if addr == "" {
			addr = config.DefaultProcessorAddr
		}
		return probe.Ready(ctx, addr)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	default:
		_, _ = io.WriteString(stderr, usage)
		return fmt.Errorf("%w: unknown command %q (see processor help)", errUsage, cmd)
	}
}

// exitCode is the exit status for run's error: 0 for nil, 2 for a usage error or drift found by
// reconcile, 1 for any other failure.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, errDrift):
		return 2
	default:
		return 1
	}
}

// loadConfig reads the processor's variables and builds the derivation rules from them,
// reading and validating PLANS_FILE.
func loadConfig(getenv func(string) string) (config.Processor, subscription.Rules, error) {
	cfg, err := config.LoadProcessor(getenv)
	if err != nil {
		return cfg, subscription.Rules{}, err
	}
	rules, err := loadRules(cfg)
	return cfg, rules, err
}

func loadRules(cfg config.Processor) (subscription.Rules, error) {
	rules := subscription.DefaultRules()
	rules.UserIDMetadataKey = cfg.UserIDMetadataKey
	rules.PastDueGrants = cfg.PastDueGrants
	if cfg.PlansFile == "" {
		return rules, nil
	}
	f, err := os.Open(cfg.PlansFile)
	if err != nil {
		return rules, fmt.Errorf("configuration: PLANS_FILE=%q: %w", cfg.PlansFile, err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	plans, err := subscription.LoadPlans(f)
	if err != nil {
		return rules, fmt.Errorf("configuration: PLANS_FILE=%q: %w", cfg.PlansFile, err)
	}
	rules.Plans = plans
	return rules, nil
}

// openPool opens a connection pool without connecting yet. Connection attempts time out after
// 5 s unless DATABASE_URL sets connect_timeout.
//
// Each connection asks for lz4 compression of the large values it writes (the raw payloads of
// stripe_events, 2-8 KB each, stored out of line and compressed). Postgres's default, pglz, costs
// several times the CPU: on a 2-core machine shared with Postgres it took a 100,000-event burst
// from about 3,900 to 2,400 events/s. A server built without lz4 refuses the setting and keeps
// pglz; nothing else changes (each stored value records its own compression, any Postgres 14+
// reads both).
func openPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// Every statement of the processor looks rows up by key. A prepared statement's generic plan
	// is made once, and one made while stripe_events was tiny (a new deployment) stays a
	// sequential scan as the table grows: measured in a soak, the history queries then took
	// 0.4-2.6 s per batch at 60,000 events and the processor fell behind. Planning each
	// execution instead goes wrong on a table not yet analyzed (a 1,000-key array is then
	// estimated to match every row). With sequential scans priced out, both plans use the
	// indexes; a query with no index to use still gets its sequential scan.
	cfg.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, _ = conn.Exec(ctx, `SET default_toast_compression = lz4`) // refused without lz4 support: keep pglz
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	return pool, nil
}

// openCommandPool opens a pool for an operator command: Postgres must answer and its schema
// must be the one this code expects.
func openCommandPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	if err := schemaStatus(url); err != nil {
		return nil, err
	}
	pool, err := openPool(ctx, url)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("DATABASE_URL: Postgres does not answer: %w", err)
	}
	return pool, nil
}

// schemaStatus is nil when the database's schema is migrations.Version and clean. It connects
// through golang-migrate, which waits for a migration running elsewhere to finish.
func schemaStatus(url string) error {
	v, dirty, err := migrations.Current(withConnectTimeout(url))
	switch {
	case err != nil:
		return fmt.Errorf("DATABASE_URL: read schema version: %w", err)
	case dirty:
		return fmt.Errorf("schema: version %d is dirty (a migration failed halfway; repair it, then run processor migrate)", v)
	case v != migrations.Version:
		return fmt.Errorf("schema: version %d, this processor needs %d (run processor migrate)", v, migrations.Version)
	}
	return nil
}

// withConnectTimeout adds connect_timeout=5 to a database URL that sets none, so a connection
// attempt to a Postgres that does not answer fails instead of hanging.
func withConnectTimeout(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return databaseURL
	}
	q := u.Query()
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "5")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func migrateCmd(getenv func(string) string, stdout io.Writer) error {
	url, err := config.LoadDatabase(getenv)
	if err != nil {
		return err
	}
	if err := migrations.Up(url); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := schemaStatus(url); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "schema at version %d\n", migrations.Version)
	return err
}

// commandDeps are what replay and dlq redrive run on.
type commandDeps struct {
	pool *pgxpool.Pool
	proj *projector
}

func openCommand(ctx context.Context, getenv func(string) string, stderr io.Writer) (commandDeps, error) {
	cfg, rules, err := loadConfig(getenv)
	if err != nil {
		return commandDeps{}, err
	}
	pool, err := openCommandPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return commandDeps{}, err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	reg := prometheus.NewRegistry()
	// issue 15: replay and redrive record the notifications of what they change, for serve to deliver.
	notify := newNotifier(pool, cfg.NotifyURLs, cfg.NotifySecret, nil, defaultNotifyOptions(), logger, reg)
	return commandDeps{
		pool: pool,
		proj: &projector{db: pool, rules: rules, log: logger, metrics: newMetrics(reg), notify: notify},
	}, nil
}

func replayCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o replayOptions
	fs.StringVar(&o.Customer, "customer", "", "re-derive this customer `ID` only")
	fs.BoolVar(&o.All, "all", false, "re-derive every customer")
	fs.Usage = func() {
		_, _ = fmt.Fprintln(stderr, "Usage: processor replay --customer ID | --all")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: replay: %w", errUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: replay takes no positional arguments, got %q", errUsage, strings.Join(fs.Args(), " "))
	case (o.Customer == "") == !o.All:
		fs.Usage()
		return fmt.Errorf("%w: replay needs exactly one of --customer ID or --all", errUsage)
	}
	deps, err := openCommand(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer deps.pool.Close()
	o.PageSize, o.ProgressEvery = 500, 2*time.Second
	return replay(ctx, deps.pool, deps.proj, o, stdout, stderr)
}

func dlqCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: dlq needs a subcommand: list or redrive [EVENT_ID]", errUsage)
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "list":
		if len(rest) > 0 {
			return fmt.Errorf("%w: dlq list takes no arguments, got %q", errUsage, strings.Join(rest, " "))
		}
		url, err := config.LoadDatabase(getenv)
		if err != nil {
			return err
		}
		pool, err := openCommandPool(ctx, url)
		if err != nil {
			return err
		}
		defer pool.Close()
		return dlqList(ctx, pool, stdout)
	case "redrive":
		if len(rest) > 1 {
			return fmt.Errorf("%w: dlq redrive takes at most one EVENT_ID, got %q", errUsage, strings.Join(rest, " "))
		}
		eventID := ""
		if len(rest) == 1 {
			eventID = rest[0]
		}
		deps, err := openCommand(ctx, getenv, stderr)
		if err != nil {
			return err
		}
		defer deps.pool.Close()
		return dlqRedrive(ctx, deps.pool, deps.proj, eventID, stdout)
	default:
		return fmt.Errorf("%w: unknown dlq subcommand %q: want list or redrive [EVENT_ID]", errUsage, sub)
	}
}
