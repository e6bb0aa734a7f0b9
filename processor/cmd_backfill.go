package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tollgate/tollgate/processor/internal/backfill"
	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/jsconn"
	"github.com/tollgate/tollgate/processor/internal/pgpool"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/scope"
)

// backfillCmd runs `processor backfill`.
func backfillCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := cli.ParseBackfill(args, stderr)
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
`, time.Since(start).Round(time.Millisecond), cp.Counts, backfill.Window(cp.CreatedGTE, cp.CreatedLTE), cli.Filters(o))
	return err
}
