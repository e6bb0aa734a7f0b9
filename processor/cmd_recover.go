package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/jsconn"
	"github.com/tollgate/tollgate/processor/internal/operate"
)

// recoverCmd is `processor recover [--since 10m]`: after a restore from a backup, re-apply what
// the stream retains since then, and with STRIPE_API_KEY backfill from Stripe since then.
func recoverCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.Duration("since", config.DefaultRetainApplied, "how far back the database lacks history (the age of the restored backup, and some)")
	fs.Usage = func() {
		_, _ = fmt.Fprintln(stderr, "Usage: processor recover [--since 10m]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: recover: %w", cli.ErrUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: recover takes no positional arguments, got %q", cli.ErrUsage, strings.Join(fs.Args(), " "))
	case *since <= 0:
		return fmt.Errorf("%w: recover: --since must be positive, got %s", cli.ErrUsage, *since)
	}
	cfg, _, err := cli.LoadConfig(getenv)
	if err != nil {
		return err
	}
	deps, err := cli.Open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer deps.Pool.Close()
	js, done, err := jsconn.OpenCommandStream(ctx, cfg, "tollgate-processor-recover")
	if err != nil {
		return err
	}
	defer done()
	from := time.Now().Add(-*since)
	if _, err := operate.Recover(ctx, js, deps.Pool, deps.Proj, from, stdout, slog.New(slog.NewJSONHandler(stderr, nil))); err != nil {
		return err
	}
	if cfg.Stripe.Key == "" {
		if cfg.RetainApplied < *since {
			_, err = fmt.Fprintf(stdout, "the stream retains %s (STREAM_RETAIN_APPLIED): set STRIPE_API_KEY to backfill the rest of %s from Stripe\n",
				cfg.RetainApplied, *since)
		}
		return err
	}
	_, _ = fmt.Fprintf(stdout, "backfilling from Stripe since %s\n", from.UTC().Format(time.RFC3339))
	return backfillCmd(ctx, []string{"--since", since.String()}, getenv, stdout, stderr)
}
