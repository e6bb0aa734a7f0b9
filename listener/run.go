package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/probe"
)

const usage = `Usage: listener [command]

Commands:
  serve        receive Stripe webhooks on HTTP_ADDR and store them in JetStream (default);
               with BACKFILL_INTERVAL, also run the backfill on that timer
  backfill     pull events from the Stripe API and publish those not yet received
               [--since 72h] [--undelivered] [--types t1,t2] [--rate 25] [--restart]
  reconcile    compare the read model's subscriptions with Stripe's and print the drift;
               exit 0 without drift, 2 with drift [--customer ID] [--rate 25]
  healthcheck  exit 0 when the listener on HTTP_ADDR answers /readyz with 200
  help         print this help (listener COMMAND -h for a command's flags)

Configuration comes from environment variables (HTTP_ADDR, NATS_URL, STRIPE_WEBHOOK_SECRETS,
STRIPE_WEBHOOK_TOLERANCE, MAX_BODY_BYTES, PUBLISH_TIMEOUT, STRIPE_API_KEY, STRIPE_API_BASE,
BACKFILL_INTERVAL, BACKFILL_TYPES; DATABASE_URL for reconcile); see the README.
`

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
			return fmt.Errorf("serve takes no arguments, got %q", strings.Join(rest, " "))
		}
		return serve(ctx, getenv, stderr)
	case "backfill":
		return backfillCmd(ctx, rest, getenv, stdout, stderr)
	case "reconcile":
		return reconcileCmd(ctx, rest, getenv, stdout, stderr)
	case "healthcheck":
		addr := getenv("HTTP_ADDR")
		if addr == "" {
			addr = config.DefaultListenerAddr
		}
		return probe.Ready(ctx, addr)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	default:
		_, _ = io.WriteString(stderr, usage)
		return fmt.Errorf("unknown command %q (see listener help)", cmd)
	}
}

// exitCode is the exit status for run's error: 0 for nil, 2 for drift found by reconcile, 1 for
// any other failure.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errDrift):
		return 2
	default:
		return 1
	}
}
