package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/processor/internal/cli"
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
  recover [--since 10m]        give a database restored from a backup the events it lacks:
                               re-apply those the stream retains since then
                               (STREAM_RETAIN_APPLIED), and with STRIPE_API_KEY backfill from
                               Stripe since then
  grant add|list|revoke        access Stripe does not know of (the admin API's grants): add --user ID
                               --reason TEXT [--feature NAME]... [--limit NAME=N]... [--until RFC3339]
                               [--by NAME]; list --user ID; revoke GRANT_ID [--reason TEXT] [--by NAME];
                               add and list take [--livemode=false] [--account acct_…]
  healthcheck                  exit 0 when the processor on HTTP_ADDR answers /readyz with 200
  help                         print this help (processor COMMAND -h for a command's flags)

replay, dlq redrive, backfill and reconcile are safe while serve runs.
Configuration comes from environment variables (HTTP_ADDR, NATS_URL, NATS_CREDS, STREAM_REPLICAS, DATABASE_URL,
USER_ID_METADATA_KEY, PAST_DUE_GRANTS, PLANS_FILE; STRIPE_API_KEY, STRIPE_API_BASE,
BACKFILL_INTERVAL, BACKFILL_TYPES for backfill, reconcile and repair; ADMIN_TOKENS, NOTIFY_URLS,
NOTIFY_SECRET, STREAM_RETAIN_APPLIED); see the README.
Exit status: 0 done; 1 failure; 2 a usage error, or drift found by reconcile (whose own flag
errors exit 1, so that its 2 always means drift).
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
			return fmt.Errorf("%w: serve takes no arguments, got %q", cli.ErrUsage, strings.Join(rest, " "))
		}
		return serve(ctx, getenv, stderr)
	case "migrate":
		if len(rest) > 0 {
			return fmt.Errorf("%w: migrate takes no arguments, got %q", cli.ErrUsage, strings.Join(rest, " "))
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
	case "explain":
		return explainCmd(ctx, rest, getenv, stdout, stderr)
	case "recover":
		return recoverCmd(ctx, rest, getenv, stdout, stderr)
	case "grant":
		return grantCmd(ctx, rest, getenv, stdout, stderr)
	case "healthcheck":
		addr := getenv("HTTP_ADDR")
		if addr == "" {
			addr = config.DefaultProcessorAddr
		}
		return httpx.Probe(ctx, addr)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	default:
		_, _ = io.WriteString(stderr, usage)
		return fmt.Errorf("%w: unknown command %q (see processor help)", cli.ErrUsage, cmd)
	}
}
