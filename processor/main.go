// Command processor applies the Stripe events the listener stored in JetStream: it appends each
// to the event store (Postgres, idempotent on the event id) and re-derives the entitlement read
// model of the event's customer and user from the customer's whole history, in one transaction
// per batch, before acknowledging. It also runs the operator commands migrate, replay, dlq,
// backfill (events Stripe could not deliver, from the Stripe API, on demand and on a timer with
// BACKFILL_INTERVAL) and reconcile (the read model against Stripe's subscriptions).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tollgate/tollgate/processor/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "processor:", err)
		os.Exit(cli.ExitCode(err))
	}
}
