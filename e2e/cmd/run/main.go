// Command run is `make run`: it starts listener, processor and queryapi from bin/ on this
// machine, with NATS from NATS_URL or an embedded JetStream server, and Postgres from
// DATABASE_URL. Logs of all parts go to one terminal, each line prefixed by its service.
// Ctrl-C stops everything cleanly.
//
// Variables: every service variable of the contract, passed to the services unchanged (the
// stack generates only a webhook secret, tokens and QUERYAPI_LIVEMODE=false when they are
// unset), plus LISTENER_ADDR, QUERYAPI_ADDR, PROCESSOR_ADDR (default :8080, :8081, :8082),
// DATA_DIR (.data) and BIN_DIR (bin).
//
// Without NATS_URL it embeds this checkout's own JetStream server on a free port (store in
// DATA_DIR); without DATABASE_URL it uses a database named after the checkout. Either way it
// refuses to start while another checkout's `make run` uses the same NATS server or database,
// naming that checkout. "Tollgate is running" is printed only when the three processes it
// started answer /readyz on their own ports.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
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
	dataDir := getenv("DATA_DIR")
	if dataDir == "" {
		dataDir = ".data"
	}
	co, err := newCheckout(dataDir)
	if err != nil {
		return err
	}
	// The contract's variables reach the services exactly as set; the stack generates only the
	// ones left unset (a dev webhook secret, tokens, test mode for the query API).
	env := map[string]string{}
	for _, k := range contractVariables() {
		if v := getenv(k); v != "" {
			env[k] = v
		}
	}
	natsURL, databaseURL := getenv("NATS_URL"), getenv("DATABASE_URL")
	if natsURL == "" {
		// This checkout's own JetStream server (store in DATA_DIR), never another checkout's.
		if natsURL, err = co.natsURL(); err != nil {
			return err
		}
	}
	if databaseURL == "" {
		databaseURL = co.databaseURL()
	}
	if _, err := stack.EnsureDatabase(ctx, databaseURL); err != nil {
		return err
	}
	claim, err := co.claim(ctx, natsURL, databaseURL)
	if err != nil {
		return err
	}
	defer claim.Close()
	opts := stack.Options{
		BinDir:        getenv("BIN_DIR"),
		DataDir:       dataDir,
		NATSURL:       natsURL,
		DatabaseURL:   databaseURL,
		ListenerAddr:  getenv("LISTENER_ADDR"),
		QueryAPIAddr:  getenv("QUERYAPI_ADDR"),
		ProcessorAddr: getenv("PROCESSOR_ADDR"),
		Env:           env,
		// The generated dev secret signs only test-mode events, as `stripe listen` forwards; a
		// STRIPE_WEBHOOK_SECRETS the user set replaces it and keeps its own bindings.
		WebhookSecretMode: "test",
		Log:               stderr,
	}
	st, err := stack.Start(ctx, opts)
	if err != nil {
		return err
	}
	if err := claim.answer(st.NATSURL); err != nil {
		_ = st.Stop()
		return err
	}
	envFile := filepath.Join(dataDir, "stack.env")
	if err := os.WriteFile(envFile, fmt.Appendf(nil,
		"LISTENER_URL=%s\nQUERYAPI_URL=%s\nPROCESSOR_URL=%s\nSTRIPE_WEBHOOK_SECRET=%s\nQUERYAPI_TOKEN=%s\nADMIN_TOKEN=%s\nNATS_URL=%s\nDATABASE_URL=%s\n",
		st.URL(stack.Listener), st.URL(stack.QueryAPI), st.URL(stack.Processor), st.WebhookSecret, st.Token, st.AdminToken,
		st.NATSURL, databaseURL), 0o600); err != nil {
		_ = st.Stop()
		return fmt.Errorf("write %s: %w", envFile, err)
	}

	fmt.Fprintf(stdout, `
Tollgate is running (Ctrl-C stops it).

  webhooks   %[1]s/webhooks/stripe
  queries    %[2]s/v1/users/{user_id}/entitlement
  processor  %[3]s/metrics
  console    %[3]s/admin/   (sign in with the admin token %[5]s)
  NATS       %[6]s
  database   %[7]s

Forward Stripe test-mode events (Stripe CLI), then restart with the whsec_ it prints:
  stripe listen --forward-to %[1]s/webhooks/stripe
  STRIPE_WEBHOOK_SECRETS=whsec_... make run

Ask for an entitlement:
  curl -s -H 'Authorization: Bearer %[4]s' %[2]s/v1/users/u_42/entitlement

See the whole flow with signed demo events, in another terminal:
  make demo

`, st.URL(stack.Listener), st.URL(stack.QueryAPI), st.URL(stack.Processor), st.Token, st.AdminToken, st.NATSURL, redacted(databaseURL))

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
