// Command run is `make run`: it starts listener, processor and queryapi from bin/ on this
// machine, with NATS from NATS_URL or an embedded JetStream server, and Postgres from
// DATABASE_URL. Logs of all parts go to one terminal, each line prefixed by its service.
// Ctrl-C stops everything cleanly.
//
// Variables: NATS_URL, DATABASE_URL and every service variable of the contract, plus
// LISTENER_ADDR, QUERYAPI_ADDR, PROCESSOR_ADDR (default :8080, :8081, :8082), DATA_DIR (.data)
// and BIN_DIR (bin). STRIPE_WEBHOOK_SECRETS are accepted besides the generated dev secret.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tollgate/tollgate/e2e/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	var extra []string
	for _, s := range strings.Split(getenv("STRIPE_WEBHOOK_SECRETS"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			extra = append(extra, s)
		}
	}
	opts := stack.Options{
		BinDir:              getenv("BIN_DIR"),
		DataDir:             getenv("DATA_DIR"),
		NATSURL:             getenv("NATS_URL"),
		DatabaseURL:         getenv("DATABASE_URL"),
		ListenerAddr:        getenv("LISTENER_ADDR"),
		QueryAPIAddr:        getenv("QUERYAPI_ADDR"),
		ProcessorAddr:       getenv("PROCESSOR_ADDR"),
		ExtraWebhookSecrets: extra,
		WebhookSecretMode:   "test", // the dev secret signs only test-mode events, as `stripe listen` forwards
		Log:                 stderr,
	}
	if v := getenv("QUERYAPI_LIVEMODE"); v != "" { // default false: test mode, as stripe listen sends
		opts.Env = map[string]string{"QUERYAPI_LIVEMODE": v}
	}
	st, err := stack.Start(ctx, opts)
	if errors.Is(err, stack.ErrPostgresUnreachable) {
		return err
	}
	if err != nil {
		return err
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = ".data"
	}
	envFile := filepath.Join(dataDir, "stack.env")
	if err := os.WriteFile(envFile, fmt.Appendf(nil,
		"LISTENER_URL=%s\nQUERYAPI_URL=%s\nPROCESSOR_URL=%s\nSTRIPE_WEBHOOK_SECRET=%s\nQUERYAPI_TOKEN=%s\nADMIN_TOKEN=%s\n",
		st.URL(stack.Listener), st.URL(stack.QueryAPI), st.URL(stack.Processor), st.WebhookSecret, st.Token, st.AdminToken), 0o600); err != nil {
		_ = st.Stop()
		return fmt.Errorf("write %s: %w", envFile, err)
	}

	fmt.Fprintf(stdout, `
Tollgate is running (Ctrl-C stops it).

  webhooks   %[1]s/webhooks/stripe
  queries    %[2]s/v1/users/{user_id}/entitlement
  processor  %[3]s/metrics
  console    %[3]s/admin/   (sign in with the admin token %[5]s)

Forward Stripe test-mode events (Stripe CLI), then restart with the whsec_ it prints:
  stripe listen --forward-to %[1]s/webhooks/stripe
  STRIPE_WEBHOOK_SECRETS=whsec_... make run

Ask for an entitlement:
  curl -s -H 'Authorization: Bearer %[4]s' %[2]s/v1/users/u_42/entitlement

See the whole flow with signed demo events, in another terminal:
  make demo

`, st.URL(stack.Listener), st.URL(stack.QueryAPI), st.URL(stack.Processor), st.Token, st.AdminToken)

	select {
	case <-ctx.Done():
		st.Printf("stopping")
		if err := st.Stop(); err != nil {
			return err
		}
		st.Printf("stopped cleanly")
		return nil
	case name := <-st.Exited():
		_ = st.Stop()
		return fmt.Errorf("%s exited unexpectedly; see its log lines above", name)
	}
}
