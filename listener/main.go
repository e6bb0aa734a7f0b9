// Command listener receives Stripe webhooks, verifies their signature and stores each event,
// raw, in the JetStream stream STRIPE_EVENTS before answering 200. It holds no business logic,
// no Stripe API key and no database connection: the processor derives entitlements from the
// stream, and runs backfill and reconcile against the Stripe API.
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
