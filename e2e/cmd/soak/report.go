package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate/e2e/rig"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/pkg/stream"
)

// sampleSet is one service's memory and goroutines at one moment; -1 where unknown.
type sampleSet struct {
	name       string
	rss, heap  float64 // bytes
	goroutines float64
}

// sample reads each service's resident memory, heap in use and goroutines from its /metrics,
// and nats-server's resident memory from /proc, and logs them under label.
func (s *soak) sample(ctx context.Context, c *http.Client, r *rig.Rig, label string) []sampleSet {
	var out []sampleSet
	for _, name := range []string{stack.Listener, stack.Processor, stack.QueryAPI} {
		m, err := rig.Scrape(ctx, c, r.Stack.URL(name))
		if err != nil {
			s.fail(fmt.Errorf("sample %s: %w", label, err))
			out = append(out, sampleSet{name, -1, -1, -1})
			continue
		}
		out = append(out, sampleSet{name, m.Sum("process_resident_memory_bytes"), m.Sum("go_memstats_heap_inuse_bytes"), m.Sum("go_goroutines")})
	}
	rss, err := rig.RSS(r.NATS.Pid())
	if err != nil {
		rss = -1
	}
	out = append(out, sampleSet{"nats-server", float64(rss), -1, -1})
	var parts []string
	for _, x := range out {
		parts = append(parts, fmt.Sprintf("%s rss %s goroutines %s", x.name, mib(x.rss), count(x.goroutines)))
	}
	s.say("%-16s %s", label+":", strings.Join(parts, "; "))
	return out
}

// cacheBudget is the resident memory a service may reach by filling its bounded in-memory
// cache, whatever it used when warm: the processor keeps up to 100,000 decoded events (0.5-1 KB
// each), the query API up to 100,000 answers (about 1 KB each); twice that for the garbage
// collector's headroom, plus the rest of the process.
var cacheBudget = map[string]float64{"processor": 320 << 20, "queryapi": 320 << 20} //nolint:gochecknoglobals // constant table

// report renders the run as markdown and fails the run on a clear leak.
func (s *soak) report(r *rig.Rig, loadFor time.Duration, idle, warm, last, final []sampleSet) string {
	var b strings.Builder
	m := rig.Describe(context.Background(), r.DatabaseURL, r.NATSVersion)
	fmt.Fprintf(&b, "# Tollgate soak\n\n")
	fmt.Fprintf(&b, "- date: %s; machine: %d CPUs, %s; load average %s at end\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), m.CPUs, m.CPUModel, m.LoadAvg)
	fmt.Fprintf(&b, "- %s (sync_interval: always), %s, Go %s; command: `make soak SOAK_DURATION=%s`\n", m.NATS, m.Postgres, strings.TrimPrefix(m.Go, "go"), s.duration)
	sent := s.sent.Load()
	fmt.Fprintf(&b, "- load: %s at %d webhooks/s asked, %.0f/s sent (%d webhooks: %d unique events, %d sent again, %d answered duplicate:true); %d checks (%d not yet projected: 404)\n",
		loadFor.Round(time.Second), s.rate, float64(sent)/loadFor.Seconds(), sent, len(s.accepted), s.dups.Load(), s.dupAnswers.Load(), s.checks.Load(), s.notFound.Load())
	fmt.Fprintf(&b, "\n| service | RSS start (idle) | RSS warm (load) | RSS end of load | RSS end (idle) | heap warm → end of load | goroutines start (idle) | warm | end of load | end (idle) |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|\n")
	var leaks []string
	for i := range idle {
		at := func(set []sampleSet) sampleSet {
			if i < len(set) {
				return set[i]
			}
			return sampleSet{idle[i].name, -1, -1, -1}
		}
		st, w, l, f := idle[i], at(warm), at(last), at(final)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s → %s | %s | %s | %s | %s |\n", st.name,
			mib(st.rss), mib(w.rss), mib(l.rss), mib(f.rss), mib(w.heap), mib(l.heap),
			count(st.goroutines), count(w.goroutines), count(l.goroutines), count(f.goroutines))
		if st.goroutines >= 0 && f.goroutines > 2*st.goroutines+50 {
			leaks = append(leaks, fmt.Sprintf("%s goroutines %.0f → %.0f", st.name, st.goroutines, f.goroutines))
		}
		if w.rss > 0 && f.rss > max(2*w.rss+64<<20, cacheBudget[st.name]) {
			leaks = append(leaks, fmt.Sprintf("%s RSS %s → %s", st.name, mib(w.rss), mib(f.rss)))
		}
	}
	if len(leaks) > 0 {
		s.fail(fmt.Errorf("leak: %s", strings.Join(leaks, "; ")))
	}
	b.WriteString(queueMemory(idle, final, len(s.accepted), loadFor))
	s.mu.Lock()
	errs := append([]error(nil), s.errs...)
	s.mu.Unlock()
	if len(errs) == 0 {
		fmt.Fprintf(&b, "\nNo errors: every webhook answered 200, every accepted event is stored once, every user's answer matches its events, no dead letters; goroutines within 2× +50 of the idle start, resident memory within 2× +64 MiB of the warm sample, or within the budget of a bounded cache (processor and query API: 320 MiB). Memory that grows under load and stays is those caches filling; they reach their caps after about 100,000 events.\n")
	} else {
		fmt.Fprintf(&b, "\n%d errors:\n\n", len(errs))
		for i, err := range errs {
			if i == 20 {
				fmt.Fprintf(&b, "- ... and %d more\n", len(errs)-20)
				break
			}
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		}
	}
	return b.String()
}

func mib(v float64) string {
	if v < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f MiB", v/(1<<20))
}

func count(v float64) string {
	if v < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f", v)
}

// queueMemory is the report's line on nats-server's memory: what it kept per unique event once
// every event was applied and purged (idle start to idle end), and what the duplicate window
// holds at this run's rate. The server keeps each event id of the last stream.DuplicateWindow
// whatever is purged, so its memory grows with the run until the window is full, then stays.
func queueMemory(idle, final []sampleSet, unique int, loadFor time.Duration) string {
	start, end := natsRSS(idle), natsRSS(final)
	if start < 0 || end < 0 || unique == 0 {
		return "\nQueue memory: nats-server's resident memory unknown.\n"
	}
	perEvent := (end - start) / float64(unique)
	rate := float64(unique) / loadFor.Seconds()
	window := stream.DuplicateWindow
	held := rate * window.Seconds()
	return fmt.Sprintf("\nQueue memory: nats-server's resident memory %s idle at start, %s idle at the end after %d unique events "+
		"(all applied and purged): **%.0f bytes per event** kept, the ids of the %s duplicate window. "+
		"At this run's %.0f events/s a full window holds %.0f ids, about %s at that cost; the window's memory stops growing after %s of traffic.\n",
		mib(start), mib(end), unique, perEvent, window, rate, held, mib(held*max(perEvent, 0)), window)
}

func natsRSS(set []sampleSet) float64 {
	for _, x := range set {
		if x.name == "nats-server" {
			return x.rss
		}
	}
	return -1
}
