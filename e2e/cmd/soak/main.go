// Command soak is `make soak`: it starts the real bin/ programs against a nats-server process and
// a fresh Postgres database, sends them a steady stream of Stripe-signed events for a bounded
// time (duplicates, resent old events and shuffled order included) while reading entitlements,
// and reports each service's memory and goroutines at the start, under load and at the end,
// with every error. At the end it checks that every accepted event is stored once and that
// every user's answer is the one its events lead to.
//
// It exits non-zero on any error, on a lost or wrong answer, or on a clear leak: goroutines at
// the end, idle, more than twice (+50) those at the start, idle; or resident memory at the end
// more than twice (+64 MiB) that under load at the start and more than a bounded cache may take
// (cacheBudget).
//
//	go run ./e2e/cmd/soak -duration 3m -rate 500 -reads 500
//
// Variables: BIN_DIR (bin), DATABASE_URL (the Postgres server to create tollgate_soak_<random>
// on), SOAK_LOG (bench/out/soak.log: the services' logs); the table also goes to
// bench/out/soak.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// settings are the soak's flags and variables.
type settings struct {
	duration   time.Duration
	rate       int // events a second
	reads      int // entitlement checks a second
	binDir     string
	dbURL      string
	logPath    string
	reportPath string
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := settings{binDir: getenv("BIN_DIR"), dbURL: getenv("DATABASE_URL"), logPath: getenv("SOAK_LOG")}
	defDur := 3 * time.Minute
	if v := getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("SOAK_DURATION: %w", err)
		}
		defDur = d
	}
	fs.DurationVar(&s.duration, "duration", defDur, "how long the steady load runs (SOAK_DURATION)")
	fs.IntVar(&s.rate, "rate", 500, "webhooks sent a second, duplicates included")
	fs.IntVar(&s.reads, "reads", 500, "entitlement checks a second")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if s.duration <= 0 || s.duration > time.Hour || s.rate <= 0 || s.reads < 0 {
		return fmt.Errorf("want 0 < -duration <= 1h, -rate > 0, -reads >= 0")
	}
	if s.binDir == "" {
		s.binDir = "bin"
	}
	if s.logPath == "" {
		s.logPath = filepath.Join("bench", "out", "soak.log")
	}
	s.reportPath = filepath.Join(filepath.Dir(s.logPath), "soak.md")
	if err := os.MkdirAll(filepath.Dir(s.logPath), 0o755); err != nil {
		return err
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	sk := &soak{settings: s, log: logf, progress: stderr}
	report, err := sk.run(ctx)
	if report != "" {
		fmt.Fprint(stdout, report)
		if werr := os.WriteFile(s.reportPath, []byte(report), 0o644); werr != nil {
			fmt.Fprintln(stderr, "soak: write report:", werr)
		}
		fmt.Fprintf(stderr, "soak: report in %s, services' logs in %s\n", s.reportPath, s.logPath)
	}
	return err
}
