package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/backfill"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/syncbuf"
	"github.com/tollgate/tollgate/testkit/wait"
)

// metric reads one unlabelled series from the processor's /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	require.NotNil(t, m, "%s is not on /metrics", name)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// served is a processor serving through run(), as main runs it.
type served struct {
	base   string // http://host:port
	stderr *syncbuf.Buffer
	cancel context.CancelFunc // SIGTERM
	done   chan error
}

// wait waits for run to return and gives its result.
func (s *served) Wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s")
		return nil
	}
}

// serveWithEnv runs `processor` (serve) against the bundle's NATS and database with extra
// variables, until the test ends, and waits until it answers /healthz.
func bundleServeWithEnv(b *processortest.Bundle, t *testing.T, extra map[string]string) *served {
	t.Helper()
	addr := freeAddr(t)
	env := map[string]string{"HTTP_ADDR": addr, "NATS_URL": b.Nats.URL(), "DATABASE_URL": b.DB.URL}
	for k, v := range extra {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{base: "http://" + addr, stderr: &syncbuf.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, nil, envOf(env), io.Discard, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			s.done <- err
		case <-time.After(30 * time.Second):
			t.Errorf("run did not return after cancel")
		}
		if t.Failed() {
			t.Logf("processor stderr:\n%s", s.stderr.String())
		}
	})
	wait.For(t, 20*time.Second, "the processor answers /healthz", func() bool {
		code, _ := httpGet(t, s.base+"/healthz")
		return code == http.StatusOK
	})
	return s
}

// holdLock takes the scheduled backfill's advisory lock on a connection of the test's own, as a
// processor in the middle of a run holds it; the returned function releases it.
func holdLock(t *testing.T, databaseURL string) (release func()) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), databaseURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	_, err = conn.Exec(t.Context(), `SELECT pg_advisory_lock($1)`, backfill.BackfillLockKey)
	require.NoError(t, err)
	return func() {
		var ok bool
		require.NoError(t, conn.QueryRow(t.Context(), `SELECT pg_advisory_unlock($1)`, backfill.BackfillLockKey).Scan(&ok))
		require.True(t, ok)
	}
}

// runSpan is one scheduled run of one processor, from its logs: it started after the processor
// took the lock and finished before it released it.
type runSpan struct {
	listener      int
	start, finish time.Time
}

// runSpans reads the scheduled runs from a processor's JSON logs.
func runSpans(t *testing.T, listener int, logs string) (spans []runSpan, skips int) {
	t.Helper()
	var open *runSpan
	for _, line := range strings.Split(logs, "\n") {
		if line == "" {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		switch {
		case rec.Msg == "scheduled backfill started":
			require.Nil(t, open, "a processor runs one backfill at a time")
			open = &runSpan{listener: listener, start: rec.Time}
		case strings.HasPrefix(rec.Msg, "scheduled backfill finished"):
			require.NotNil(t, open)
			open.finish = rec.Time
			spans = append(spans, *open)
			open = nil
		case strings.HasPrefix(rec.Msg, "scheduled backfill skipped"):
			skips++
		case strings.HasPrefix(rec.Msg, "scheduled backfill failed"):
			t.Fatalf("processor %d: %s", listener, line)
		}
	}
	return spans, skips
}

// Two processors with BACKFILL_INTERVAL on one NATS and Postgres: while the advisory lock is
// held neither runs; once it is free they take turns, never overlapping, and the recovered
// counter counts exactly the events whose webhook did not arrive.
func TestScheduledBackfillOneProcessorAtATime(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{Every500: 4, Delay: 30 * time.Millisecond})
	delivered := func(i int) bool { return i%3 == 0 }
	ids, raws := processortest.AddEvents(t, fake, "sched", 30, delivered)

	// The test holds the lock first, as a processor in the middle of a run would.
	release := holdLock(t, b.DB.URL)

	env := map[string]string{"STRIPE_API_KEY": processortest.TestAPIKey, "STRIPE_API_BASE": fake.URL, "BACKFILL_INTERVAL": "100ms"}
	processors := []*served{bundleServeWithEnv(b, t, env), bundleServeWithEnv(b, t, env)}
	wait.For(t, 20*time.Second, "both skipped their runs while the lock is held", func() bool {
		for i, p := range processors {
			if _, skips := runSpans(t, i, p.stderr.String()); skips < 2 {
				return false
			}
		}
		return true
	})
	var webhooks int
	for i, raw := range raws {
		if delivered(len(raws) - 1 - i) {
			b.Webhook(t, raw)
			webhooks++
		}
	}
	for i, p := range processors {
		spans, _ := runSpans(t, i, p.stderr.String())
		require.Empty(t, spans, "no run while another holds the lock")
		require.Zero(t, metric(t, p.base, "tollgate_processor_backfill_runs_total"))
		require.Zero(t, metric(t, p.base, "tollgate_processor_backfill_last_success_timestamp_seconds"))
	}
	require.Zero(t, fake.Served(), "nothing listed")

	release()
	wait.For(t, 20*time.Second, "the missed events recovered", func() bool {
		return b.MsgCount(t) == uint64(len(ids))
	})
	wait.For(t, 20*time.Second, "both processors ran, and met the lock", func() bool {
		var skipsAfter int
		for i, p := range processors {
			spans, skips := runSpans(t, i, p.stderr.String())
			if len(spans) < 2 {
				return false
			}
			skipsAfter += skips
		}
		return skipsAfter >= 6 // 4 while the test held the lock, and more since
	})
	var recovered float64
	for i, p := range processors {
		recovered += metric(t, p.base, "tollgate_processor_backfill_recovered_events_total")
		require.GreaterOrEqual(t, metric(t, p.base, "tollgate_processor_backfill_runs_total"), 2.0)
		require.Zero(t, metric(t, p.base, "tollgate_processor_backfill_failures_total"))
		require.InDelta(t, float64(time.Now().Unix()), metric(t, p.base, "tollgate_processor_backfill_last_success_timestamp_seconds"), 30,
			"processor %d shows the last success of either", i)
	}
	require.InDelta(t, float64(len(ids)-webhooks), recovered, 0, "the events whose webhook did not arrive, each once")
	b.Drained(t, processortest.TestOptions().Durable, 20*time.Second)
	require.Equal(t, len(ids), processortest.StoredEvents(t, b.DB.Pool), "the processors applied the recovered events")
	for _, p := range processors {
		p.cancel()
		require.NoError(t, p.Wait(t))
	}

	var spans []runSpan
	for i, p := range processors {
		s, _ := runSpans(t, i, p.stderr.String())
		spans = append(spans, s...)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	for i := 1; i < len(spans); i++ {
		require.False(t, spans[i].start.Before(spans[i-1].finish),
			"run of processor %d at %s began before the run of processor %d ended at %s", spans[i].listener, spans[i].start, spans[i-1].listener, spans[i-1].finish)
	}

	// Each run after the first lists from the previous start less the overlap, up to the settle time.
	var windows []string
	for _, r := range fake.Requests() {
		if r.Status == http.StatusOK {
			windows = append(windows, r.Query.Get("created[gte]")+".."+r.Query.Get("created[lte]"))
			require.False(t, r.Query.Has("delivery_success"), "scheduled runs list every event")
		}
	}
	require.GreaterOrEqual(t, len(windows), 4)
	gte := func(w string) int64 {
		v, err := strconv.ParseInt(strings.Split(w, "..")[0], 10, 64)
		require.NoError(t, err)
		return v
	}
	lte := func(w string) int64 {
		v, err := strconv.ParseInt(strings.Split(w, "..")[1], 10, 64)
		require.NoError(t, err)
		return v
	}
	require.InDelta(t, float64(time.Now().Add(-backfill.DefaultSince).Unix()), float64(gte(windows[0])), 60, "the first run: 72h")
	require.InDelta(t, float64(time.Now().Add(-backfill.ScheduledSettle).Unix()), float64(lte(windows[0])), 60)
	require.InDelta(t, float64(time.Now().Add(-backfill.ScheduledOverlap).Unix()), float64(gte(windows[len(windows)-1])), 60, "later runs: since the last start, less the overlap")
}

// A scheduled run that fails (here: Stripe refuses the key) counts a failure, logs why, and
// the processor keeps consuming and tries again on the next tick.
func TestScheduledBackfillFailureIsCounted(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	fake := stripetest.NewAPI(t, "rk_test_other_key", stripetest.Faults{})
	p := bundleServeWithEnv(b, t, map[string]string{"STRIPE_API_KEY": processortest.TestAPIKey, "STRIPE_API_BASE": fake.URL, "BACKFILL_INTERVAL": "50ms"})
	wait.For(t, 20*time.Second, "two failed runs", func() bool {
		return metric(t, p.base, "tollgate_processor_backfill_failures_total") >= 2
	})
	require.Contains(t, p.stderr.String(), `"msg":"scheduled backfill failed"`)
	require.Contains(t, p.stderr.String(), "Invalid API Key provided")
	require.Zero(t, metric(t, p.base, "tollgate_processor_backfill_last_success_timestamp_seconds"))
	wait.For(t, 20*time.Second, "ready", func() bool {
		code, _ := httpGet(t, p.base+"/readyz")
		return code == http.StatusOK
	})
	p.cancel()
	require.NoError(t, p.Wait(t))
}
