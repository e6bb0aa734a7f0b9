package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/processor/internal/backfill"
	"github.com/tollgate/tollgate/processor/internal/jsconn"
	"github.com/tollgate/tollgate/processor/internal/pgpool"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/scope"
)

// backfillOptions are the flags of `processor backfill`.
type backfillOptions struct {
	Since       time.Duration
	Undelivered bool
	Types       []string
	Rate        float64
	Restart     bool
	Account     string // the connected account to list events of (Stripe-Account); "" for the platform
}

const backfillUsage = `Usage: processor backfill [--since 72h] [--undelivered] [--types t1,t2] [--account acct_…] [--rate 25] [--restart]

Lists the events of the last --since from the Stripe API (GET /v1/events), asks the event store
which of them it does not hold (at any age), and publishes those to JetStream exactly as the
listener's webhook does (Nats-Msg-Id = event id); the processor applies them like any other.
Needs STRIPE_API_KEY (a restricted key with read access to events is enough), DATABASE_URL and
NATS_URL; STRIPE_API_BASE points it at another API (stripe-mock, a fake). An interrupted run keeps
a checkpoint in Postgres; the same command again resumes it. Exit status 0: done; 1: error.

`

// backfillCmd runs `processor backfill`.
func backfillCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseBackfillFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg, err := config.LoadBackfill(getenv)
	if err != nil {
		return err
	}
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(stderr, "backfill: "+format+"\n", args...) }
	api := stripeapi.New(cfg.Stripe, stripeapi.Options{Rate: o.Rate, Account: o.Account, OnRetry: func(r stripeapi.RetryInfo) { say("%s", r) }})
	defer api.Close()
	sc := scope.Scope{Livemode: cfg.Stripe.Livemode(), Account: o.Account}

	pool, err := pgpool.OpenCommand(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := &backfill.StateStore{DB: pool}

	js, done, err := jsconn.OpenCommandStream(ctx, cfg, "tollgate-processor-backfill")
	if err != nil {
		return err
	}
	defer done()
	key, cp, err := store.StartManual(ctx, sc, o.Since, o.Undelivered, o.Types, o.Restart, say)
	if err != nil {
		return err
	}

	start := time.Now()
	b := &backfill.Backfiller{
		Events: api, Received: pool, JS: js, Store: store, Key: key, Account: o.Account,
		Progress: func(c backfill.Counts) { say("%s", c) },
		Warn:     func(msg string) { say("warning: %s", msg) },
	}
	q := stripeapi.EventQuery{CreatedGTE: cp.CreatedGTE, CreatedLTE: cp.CreatedLTE, Undelivered: o.Undelivered, Types: o.Types}
	if err := b.Run(ctx, q, &cp); err != nil {
		if errors.Is(err, backfill.ErrInterrupted) {
			return fmt.Errorf("backfill interrupted after %s; the checkpoint is kept: run the same command again to resume", cp.Counts)
		}
		return fmt.Errorf("backfill stopped after %s; the checkpoint is kept: run the same command again to resume: %w", cp.Counts, err)
	}
	store.FinishManual(ctx, key, say)
	_, err = fmt.Fprintf(stdout, `backfill done in %s: %s
events %s%s
"already had" means the event store holds the event (at any age), or it was received and waits
in JetStream to be applied; new events were published to JetStream for the processor to apply.
`, time.Since(start).Round(time.Millisecond), cp.Counts, backfill.Window(cp.CreatedGTE, cp.CreatedLTE), filters(o))
	return err
}

// parseBackfillFlags reads and checks the flags of `processor backfill`.
func parseBackfillFlags(args []string, stderr io.Writer) (backfillOptions, error) {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := backfillOptions{Since: backfill.DefaultSince}
	fs.Var((*sinceFlag)(&o.Since), "since", "list events created in this last `duration` (such as 72h, 90m or 7d; at most 30d)")
	fs.BoolVar(&o.Undelivered, "undelivered", false, "list only events whose webhooks are pending or failed (delivery_success=false)")
	fs.Func("types", "list only these comma-separated event `types` (at most 20)", func(v string) error {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				o.Types = append(o.Types, t)
			}
		}
		return nil
	})
	fs.Float64Var(&o.Rate, "rate", stripeapi.DefaultRate, "at most this many Stripe API `requests` per second")
	fs.StringVar(&o.Account, "account", "", "list the events of this connected `account` (acct_…, sent as the Stripe-Account header); default the platform's own")
	fs.BoolVar(&o.Restart, "restart", false, "ignore the checkpoint of an interrupted run with the same flags and start over")
	fs.Usage = func() {
		_, _ = io.WriteString(stderr, backfillUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("backfill: %w", err) // flag.ErrHelp for -h: the caller exits 0
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("backfill takes no positional arguments, got %q", strings.Join(fs.Args(), " "))
	case o.Since <= 0:
		return o, fmt.Errorf("backfill: --since %s must be positive", backfill.ShortDuration(o.Since))
	case o.Since > backfill.MaxSince:
		return o, fmt.Errorf("backfill: --since %s reaches further back than Stripe keeps events (30 days, 720h); use at most --since 30d", backfill.ShortDuration(o.Since))
	case len(o.Types) > config.MaxBackfillTypes:
		return o, fmt.Errorf("backfill: --types lists %d event types; Stripe filters on at most %d", len(o.Types), config.MaxBackfillTypes)
	case o.Account != "" && !scope.ValidAccount(o.Account):
		return o, fmt.Errorf("backfill: --account %q is not a connected account id (acct_ followed by letters and digits)", o.Account)
	case o.Rate <= 0 || o.Rate > 100:
		return o, fmt.Errorf("backfill: --rate %g must be above 0 and at most 100 (Stripe's live-mode read limit)", o.Rate)
	}
	return o, nil
}

// sinceFlag is a duration flag that also takes whole days ("7d").
type sinceFlag time.Duration

func (f *sinceFlag) String() string { return backfill.ShortDuration(time.Duration(*f)) }

func (f *sinceFlag) Set(v string) error {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 72h or 7d", v)
		}
		*f = sinceFlag(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 72h or 7d", v)
	}
	*f = sinceFlag(d)
	return nil
}

func filters(o backfillOptions) string {
	var f []string
	if o.Undelivered {
		f = append(f, "undelivered only")
	}
	if len(o.Types) > 0 {
		f = append(f, "types "+strings.Join(o.Types, ","))
	}
	if len(f) == 0 {
		return ""
	}
	return ", " + strings.Join(f, ", ")
}
