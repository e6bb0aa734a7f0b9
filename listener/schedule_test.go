package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// metric reads one unlabelled series from the listener's /metrics.
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

// runSpan is one scheduled run of one listener, from its logs: it started after the listener
// took the lock and finished before it released it.
type runSpan struct {
	listener      int
	start, finish time.Time
}

// runSpans reads the scheduled runs from a listener's JSON logs.
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
			require.Nil(t, open, "a listener runs one backfill at a time")
			open = &runSpan{listener: listener, start: rec.Time}
		case strings.HasPrefix(rec.Msg, "scheduled backfill finished"):
			require.NotNil(t, open)
			open.finish = rec.Time
			spans = append(spans, *open)
			open = nil
		case strings.HasPrefix(rec.Msg, "scheduled backfill skipped"):
			skips++
		case strings.HasPrefix(rec.Msg, "scheduled backfill failed"):
			t.Fatalf("listener %d: %s", listener, line)
		}
	}
	return spans, skips
}

// Two listeners with BACKFILL_INTERVAL on one NATS: while the lock is held neither runs; once it
// is free they take turns, never overlapping, and the recovered counter counts exactly the
// events whose webhook did not arrive.
func TestScheduledBackfillOneListenerAtATime(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	fake := stripetest.NewAPI(t, testAPIKey, stripetest.Faults{Every500: 4, Delay: 30 * time.Millisecond})
	delivered := func(i int) bool { return i%3 == 0 }
	ids, raws := addEvents(t, fake, "sched", 30, delivered)

	// The test holds the lock first, as a listener in the middle of a run would.
	js := ns.JetStream(t)
	testLock, err := openLock(t.Context(), js, "the test")
	require.NoError(t, err)
	held, err := testLock.acquire(t.Context())
	require.NoError(t, err)

	env := map[string]string{"STRIPE_API_KEY": testAPIKey, "STRIPE_API_BASE": fake.URL, "BACKFILL_INTERVAL": "100ms"}
	listeners := []*started{startWith(t, ns.URL(), env), startWith(t, ns.URL(), env)}
	bases := []string{"http://" + listeners[0].addr, "http://" + listeners[1].addr}
	waitFor(t, 10*time.Second, "both skipped their runs while the lock is held", func() bool {
		for i, l := range listeners {
			if _, skips := runSpans(t, i, l.stderr.String()); skips < 2 {
				return false
			}
		}
		return true
	})
	var webhooks int
	for i, raw := range raws {
		if delivered(len(raws) - 1 - i) {
			resp := stripetest.Deliver(t, bases[0]+"/webhooks/stripe", raw, testSecret)
			require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
			webhooks++
		}
	}
	for i, base := range bases {
		spans, _ := runSpans(t, i, listeners[i].stderr.String())
		require.Empty(t, spans, "no run while another holds the lock")
		require.Zero(t, metric(t, base, "tollgate_listener_backfill_runs_total"))
		require.Zero(t, metric(t, base, "tollgate_listener_backfill_last_success_timestamp_seconds"))
	}
	require.Zero(t, fake.Served(), "nothing listed")

	require.NoError(t, held.release(t.Context()))
	st, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	waitFor(t, 20*time.Second, "the missed events recovered", func() bool {
		info, err := st.Info(t.Context())
		require.NoError(t, err)
		return info.State.Msgs == uint64(len(ids))
	})
	waitFor(t, 20*time.Second, "both listeners ran, and met the lock", func() bool {
		var skipsAfter int
		for i, l := range listeners {
			spans, skips := runSpans(t, i, l.stderr.String())
			if len(spans) < 2 {
				return false
			}
			skipsAfter += skips
		}
		return skipsAfter >= 6 // 4 while the test held the lock, and more since
	})
	var recovered float64
	for i, base := range bases {
		recovered += metric(t, base, "tollgate_listener_backfill_recovered_events_total")
		require.GreaterOrEqual(t, metric(t, base, "tollgate_listener_backfill_runs_total"), 2.0)
		require.Zero(t, metric(t, base, "tollgate_listener_backfill_failures_total"))
		require.InDelta(t, float64(time.Now().Unix()), metric(t, base, "tollgate_listener_backfill_last_success_timestamp_seconds"), 30,
			"listener %d shows the last success of either", i)
	}
	require.Equal(t, float64(len(ids)-webhooks), recovered, "the events whose webhook did not arrive, each once")
	for _, l := range listeners {
		l.cancel()
		require.NoError(t, l.wait(t))
	}

	var spans []runSpan
	for i, l := range listeners {
		s, _ := runSpans(t, i, l.stderr.String())
		spans = append(spans, s...)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	for i := 1; i < len(spans); i++ {
		require.False(t, spans[i].start.Before(spans[i-1].finish),
			"run of listener %d at %s began before the run of listener %d ended at %s", spans[i].listener, spans[i].start, spans[i-1].listener, spans[i-1].finish)
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
	require.InDelta(t, float64(time.Now().Add(-defaultSince).Unix()), float64(gte(windows[0])), 60, "the first run: 72h")
	require.InDelta(t, float64(time.Now().Add(-scheduledSettle).Unix()), float64(lte(windows[0])), 60)
	require.InDelta(t, float64(time.Now().Add(-scheduledOverlap).Unix()), float64(gte(windows[len(windows)-1])), 60, "later runs: since the last start, less the overlap")
}

// A scheduled run that fails (here: Stripe refuses the key) counts a failure, logs why, and
// the listener keeps serving webhooks and tries again on the next tick.
func TestScheduledBackfillFailureIsCounted(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	fake := stripetest.NewAPI(t, "rk_test_other_key", stripetest.Faults{})
	l := startWith(t, ns.URL(), map[string]string{"STRIPE_API_KEY": testAPIKey, "STRIPE_API_BASE": fake.URL, "BACKFILL_INTERVAL": "50ms"})
	base := "http://" + l.addr
	waitFor(t, 10*time.Second, "two failed runs", func() bool {
		return metric(t, base, "tollgate_listener_backfill_failures_total") >= 2
	})
	require.Contains(t, l.stderr.String(), `"msg":"scheduled backfill failed"`)
	require.Contains(t, l.stderr.String(), "Invalid API Key provided")
	require.Zero(t, metric(t, base, "tollgate_listener_backfill_last_success_timestamp_seconds"))
	code, _ := httpGet(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, "a failing backfill does not make the listener unready")
	l.cancel()
	require.NoError(t, l.wait(t))
}
