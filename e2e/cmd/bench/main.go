// Command bench is `make bench`: it starts the real bin/ programs against a nats-server process
// and a fresh Postgres database on this machine, drives them with Stripe-signed traffic of its
// own, judges them only through their HTTP surfaces, and writes one markdown table of the
// figures, goals and baselines to bench/results.md (and stdout).
//
// Phases, in order: webhook acceptance against a signature-only baseline, with NATS
// sync_interval always, with the default sync and against a three-node cluster with a replicated
// stream (STREAM_REPLICAS=3); the listener beside a bare JetStream client (publish_limit.go); the
// burst drain of a backlog; freshness from the listener's 200 to the query API's answer;
// entitlement checks against a bare handler, then at 1,000 / 20,000 / 200,000 users read at
// random (checks_cache.go).
//
// Variables: BIN_DIR (bin, must hold listener, processor, queryapi and nats-server),
// DATABASE_URL (the Postgres server to create tollgate_bench_<random> on), BENCH_OUT
// (bench/results.md), BENCH_SCALE (1; a smaller factor shrinks every phase, for a quick try),
// BENCH_LOG (bench/out/bench.log: the services' logs), BENCH_ONLY (burst: only the burst drain,
// against a default-sync nats-server, for profiling and before/after runs; peer: only the listener
// beside stripe-sync-engine, e2e/peer-sse, which needs node and npm ci there), BENCH_BURST_EVENTS
// and BENCH_BURST_CUSTOMERS (the burst's size: 100,000 events over 20,000 customers).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// settings are the bench's variables, read once.
type settings struct {
	binDir, databaseURL, out, logPath string
	scale                             float64
	only                              string // "" (every phase), "burst" or "peer"
	burstEvents, burstCustomers       int
}

func loadSettings(getenv func(string) string) (settings, error) {
	s := settings{
		binDir: getenv("BIN_DIR"), databaseURL: getenv("DATABASE_URL"),
		out: getenv("BENCH_OUT"), logPath: getenv("BENCH_LOG"), scale: 1, only: getenv("BENCH_ONLY"),
		burstEvents: burstEvents, burstCustomers: burstCustomers,
	}
	if s.only != "" && s.only != "burst" && s.only != "peer" {
		return s, fmt.Errorf("BENCH_ONLY %q: want burst, peer or nothing", s.only)
	}
	for _, v := range []struct {
		name string
		p    *int
	}{{"BENCH_BURST_EVENTS", &s.burstEvents}, {"BENCH_BURST_CUSTOMERS", &s.burstCustomers}} {
		if e := getenv(v.name); e != "" {
			n, err := strconv.Atoi(e)
			if err != nil || n <= 0 {
				return s, fmt.Errorf("%s %q: want a positive number", v.name, e)
			}
			*v.p = n
		}
	}
	if s.burstEvents < 5*s.burstCustomers {
		return s, fmt.Errorf("BENCH_BURST_EVENTS %d: want at least 5 per customer (%d customers)", s.burstEvents, s.burstCustomers)
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&s.binDir, "bin")
	def(&s.out, filepath.Join("bench", "results.md"))
	def(&s.logPath, filepath.Join("bench", "out", "bench.log"))
	if v := getenv("BENCH_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 10 {
			return s, fmt.Errorf("BENCH_SCALE %q: want a number in (0, 10]", v)
		}
		s.scale = f
	}
	return s, nil
}

func run(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	s, err := loadSettings(getenv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.logPath), 0o755); err != nil {
		return err
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	b := &bench{settings: s, log: logf, progress: stderr}
	table, runErr := b.run(ctx)
	if table == "" {
		return runErr
	}
	if err := os.MkdirAll(filepath.Dir(s.out), 0o755); err != nil {
		return errors.Join(runErr, err)
	}
	if err := os.WriteFile(s.out, []byte(table), 0o644); err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Fprint(stdout, table)
	fmt.Fprintf(stderr, "written to %s (services' logs in %s)\n", s.out, s.logPath)
	return runErr
}
