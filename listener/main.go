// Command listener receives Stripe webhooks, verifies their signature and stores each event,
// raw, in the JetStream stream STRIPE_EVENTS before answering 200. It holds no business logic:
// the processor derives entitlements from the stream. Its backfill (a command, and on a timer
// with BACKFILL_INTERVAL) pulls the events Stripe could not deliver from the Stripe API into the
// same stream; reconcile compares the read model with Stripe's subscriptions.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}
