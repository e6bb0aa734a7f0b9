package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate/tollgate/processor/internal/pgpool"
	"github.com/tollgate/tollgate/processor/internal/reconcile"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/scope"
)

const reconcileUsage = `Usage: processor reconcile [--customer ID] [--account acct_…] [--rate 25] [--repair [--wait 1m]]

Compares the subscription statuses of the read model (customer_entitlements in DATABASE_URL, read
in a read-only transaction) with Stripe's current subscriptions (GET /v1/subscriptions?status=all)
and prints the drift per customer. One scope is compared: the mode of STRIPE_API_KEY (live for
sk_live_/rk_live_ keys, else test) and the platform, or the connected account --account names
(sent as the Stripe-Account header). Without --repair it changes nothing. With --repair it reads
each drifted subscription and its customer (GET /v1/subscriptions/{id}, /v1/customers/{id}),
publishes them into the stream as snapshot events (tgsnap_…, tollgate.snapshot.<object>) of that
scope for the running processor to apply, waits for them and compares again. Exit status 0: no
drift (left); 2: drift; 1: error (a wrong flag included, so that 2 always means drift). Needs
STRIPE_API_KEY (read access to subscriptions and customers), DATABASE_URL and, with --repair,
NATS_URL.

`

// reconcileCmd runs `processor reconcile`.
func reconcileCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	customerID := fs.String("customer", "", "compare this customer `ID` only (customer= on the Stripe query)")
	account := fs.String("account", "", "compare this connected account's data (`acct_…`, the Stripe-Account header); default the platform's own")
	rate := fs.Float64("rate", stripeapi.DefaultRate, "at most this many Stripe API `requests` per second")
	repairFlag := fs.Bool("repair", false, "read each drifted subscription (and its customer) from Stripe, publish them as snapshot events, wait for them to be applied and compare again (needs NATS_URL and a running processor)")
	repairWait := fs.Duration("wait", reconcile.DefaultRepairWait, "with --repair, how long to wait for the processor to apply the snapshot events")
	fs.Usage = func() {
		_, _ = io.WriteString(stderr, reconcileUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("reconcile takes no positional arguments, got %q", strings.Join(fs.Args(), " "))
	case *account != "" && !scope.ValidAccount(*account):
		return fmt.Errorf("reconcile: --account %q is not a connected account id (acct_ followed by letters and digits)", *account)
	case *rate <= 0 || *rate > 100:
		return fmt.Errorf("reconcile: --rate %g must be above 0 and at most 100 (Stripe's live-mode read limit)", *rate)
	}
	cfg, err := config.LoadBackfill(getenv)
	if err != nil {
		return err
	}
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(stderr, "reconcile: "+format+"\n", args...) }
	sc := scope.Scope{Livemode: cfg.Stripe.Livemode(), Account: *account}
	api := stripeapi.New(cfg.Stripe, stripeapi.Options{Rate: *rate, Account: *account, OnRetry: func(r stripeapi.RetryInfo) { say("%s", r) }})
	defer api.Close()
	say("comparing the %s read model", sc)

	pool, err := pgpool.OpenCommand(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	r, err := reconcile.Once(ctx, api, pool, sc, *customerID, say)
	if err != nil {
		return err
	}
	if err := reconcile.WriteReport(stdout, r, *customerID); err != nil {
		return err
	}
	if *repairFlag && len(r.Drift) > 0 {
		if err := reconcile.RepairDrift(ctx, cfg, api, pool, sc, r.Drift, *repairWait, say); err != nil {
			return fmt.Errorf("reconcile --repair: %w", err)
		}
		if r, err = reconcile.Once(ctx, api, pool, sc, *customerID, say); err != nil {
			return err
		}
		if err := reconcile.WriteRepairReport(stdout, r, *customerID); err != nil {
			return err
		}
	}
	if err := reconcile.Record(ctx, pool, sc, r); err != nil { // the console shows the last one
		say("could not record this run for the console: %v", err)
	}
	if len(r.Drift) > 0 {
		return fmt.Errorf("reconcile: %w in %s (table on stdout)", reconcile.ErrDrift, reconcile.Plural(r.DriftCustomers(), "customer"))
	}
	return nil
}
