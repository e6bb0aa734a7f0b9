package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/e2e/load"
	"github.com/tollgate/tollgate/e2e/rig"
)

// table renders the results as markdown: a header that says where and how they were measured,
// then one row a figure.
func (b *bench) table(m rig.Machine, started time.Time, loadStart string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "# Tollgate end-to-end benchmark\n\n")
	fmt.Fprintf(&s, "- date: %s (took %s)\n", started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second))
	fmt.Fprintf(&s, "- machine: %d CPUs, %s; load average (1/5/15 min) %s at start, %s at end\n", m.CPUs, m.CPUModel, loadStart, rig.LoadAvg())
	fmt.Fprintf(&s, "- software: Go %s; %s as its own process, JetStream file store, sync as each row says; %s, default settings\n",
		strings.TrimPrefix(m.Go, "go"), m.NATS, m.Postgres)
	fmt.Fprintf(&s, "- command: `make bench` (`go run ./e2e/cmd/bench`%s%s): the real bin/ services, judged through HTTP only; load generator, services, NATS and Postgres share the machine\n",
		scaleNote(b.scale), onlyNote(b.settings))
	fmt.Fprintf(&s, "\n| metric | result | goal | met |\n|---|---|---|---|\n")
	for _, r := range b.rows {
		goal := r.goal
		if goal == "" {
			goal = "baseline"
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s |\n", r.metric, r.result, goal, r.met)
	}
	if len(b.errs) > 0 {
		fmt.Fprintf(&s, "\nErrors during the run:\n\n")
		for _, err := range b.errs {
			fmt.Fprintf(&s, "- %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		}
	}
	return s.String()
}

func scaleNote(scale float64) string {
	if scale == 1 {
		return ""
	}
	return fmt.Sprintf(", BENCH_SCALE=%g", scale)
}

// onlyNote names the variables of a run of one phase alone.
func onlyNote(s settings) string {
	switch s.only {
	case "":
		return ""
	case "burst":
		return fmt.Sprintf(", BENCH_ONLY=%s BENCH_BURST_EVENTS=%d BENCH_BURST_CUSTOMERS=%d", s.only, s.burstEvents, s.burstCustomers)
	}
	return ", BENCH_ONLY=" + s.only
}

// summary is a run's rate and latency in the table's words.
func summary(r load.Result) string {
	s := fmt.Sprintf("**%s req/s**, p50 %s, p99 %s", thousands(r.Rate()), load.FormatMs(r.Quantile(0.5)), load.FormatMs(r.Quantile(0.99)))
	if r.Errors > 0 {
		s += fmt.Sprintf(", %d errors", r.Errors)
	}
	return s
}

// thousands prints a rate rounded to a whole number with thousands separators.
func thousands(v float64) string {
	digits := strconv.FormatInt(int64(v+0.5), 10)
	var out []byte
	for i := range len(digits) {
		if i > 0 && (len(digits)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, digits[i])
	}
	return string(out)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func sortDurations(d []time.Duration) { slices.Sort(d) }
