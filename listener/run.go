package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/httpx"
)

const usage = `Usage: listener [command]

Commands:
  serve        receive Stripe webhooks on HTTP_ADDR and store them in JetStream (default)
  healthcheck  exit 0 when the listener on HTTP_ADDR answers /readyz with 200
  help         print this help

Configuration comes from environment variables (HTTP_ADDR, NATS_URL, STREAM_REPLICAS,
STRIPE_WEBHOOK_SECRETS, STRIPE_WEBHOOK_TOLERANCE, MAX_BODY_BYTES, PUBLISH_TIMEOUT); see the README. Backfill and
reconcile are processor commands (processor backfill, processor reconcile).
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
	case "backfill", "reconcile":
		return fmt.Errorf("%s moved to the processor: run processor %s (it holds STRIPE_API_KEY and DATABASE_URL)", cmd, cmd)
	case "healthcheck":
		addr := getenv("HTTP_ADDR")
		if addr == "" {
			addr = config.DefaultListenerAddr
		}
		return httpx.Probe(ctx, addr)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	default:
		_, _ = io.WriteString(stderr, usage)
		return fmt.Errorf("unknown command %q (see listener help)", cmd)
	}
}

// exitCode is the exit status for run's error: 0 for nil, 1 for any failure (a lost NATS
// connection included, so that the supervisor restarts the listener).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	return 1
}
