package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// storeHistory appends a customer's history of n events to the store in bulk (chunks of 5,000
// events per statement, generated chunk by chunk so that the benchmark process does not hold the
// whole history) and returns the created of its last event. The history is kit.history's: the
// signup, then monthly renewals with their paid invoices.
func storeHistory(tb testing.TB, db *pgtest.DB, k *processortest.Kit, customer string, n int) int64 {
	tb.Helper()
	ctx := context.Background()
	var chunk []stripeevent.Event
	var last int64
	stored := 0
	add := func(raws ...[]byte) {
		for _, raw := range raws {
			if stored+len(chunk) == n {
				break
			}
			var compact bytes.Buffer
			require.NoError(tb, json.Compact(&compact, raw))
			ev, err := stripeevent.Parse(compact.Bytes())
			require.NoError(tb, err)
			last = max(last, ev.Created)
			chunk = append(chunk, ev)
		}
		if len(chunk) >= 5000 || stored+len(chunk) == n {
			_, err := eventstore.Append(ctx, db.Pool, chunk)
			require.NoError(tb, err)
			stored += len(chunk)
			chunk = chunk[:0]
		}
	}
	add(k.Signup(customer, "u_"+customer, "sub_"+customer, "price_pro", processortest.T0)...)
	for month := int64(1); stored < n; month++ {
		at := processortest.T0 + 41 + month*30*86400
		add(k.Subscription("customer.subscription.updated", customer, "sub_"+customer, "active", "price_pro", at,
			map[string]any{"current_period_start": at - 30*86400, "current_period_end": at, "latest_invoice": "in_prev"}),
			k.InvoicePaid(customer, "sub_"+customer, at))
	}
	return last
}

// newEvent is the customer's next renewal, after every stored event, ready for apply.
func newEvent(tb testing.TB, k *processortest.Kit, customer string, at int64) projection.Admitted {
	tb.Helper()
	raw := k.Subscription("customer.subscription.updated", customer, "sub_"+customer, "active", "price_pro", at,
		map[string]any{"current_period_start": at - 30*86400, "current_period_end": at, "latest_invoice": "in_prev"})
	a, err := projection.Admit(raw)
	require.NoError(tb, err)
	return a
}

// rssBytes is the process's resident set (VmRSS), 0 where /proc is not there.
func rssBytes() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

// reportLatencies reports the median and p99 of one apply, and the heap (after a GC, with the
// projector and its cache still alive) and RSS after.
func reportLatencies(b *testing.B, p *projection.Projector, took []time.Duration) {
	b.Helper()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(took[(len(took)*99)/100].Microseconds())/1000, "ms-p99")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(p)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(rssBytes()/(1<<20), "rss-MiB")
}

// BenchmarkNewEvent is the cost of one new event with checkpoints: a customer has n stored events,
// one more arrives (after all of them, as a live endpoint receives it) and apply stores it and
// re-derives the customer, as the consumer does with the processor's decoded-event cache.
// derive=checkpoint resumes from the customer's checkpoint; derive=full is the baseline, the
// whole history every time. ms-median and ms-p99 are per event; heap-MiB and rss-MiB are the
// benchmark process's after the run (cumulative over the sub-benchmarks of one run).
func BenchmarkNewEvent(b *testing.B) {
	for _, n := range []int{10, 1000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			db := pgtest.New(b)
			k := processortest.NewKit(b, "f")
			customer := "cus_flat"
			at := storeHistory(b, db, k, customer, n)
			for _, mode := range []string{"checkpoint", "full"} {
				b.Run("derive="+mode, func(b *testing.B) {
					ctx := context.Background()
					p := &projection.Projector{DB: db.Pool, Rules: subscription.DefaultRules(), Cache: projection.NewEventCache(projection.DefaultEventCacheSize),
						Log: processortest.TestLogger(b), Metrics: projection.NewMetrics(prometheus.NewRegistry()), FullDerive: mode == "full"}
					// The first event after the history is the costly one (the scratch
					// derivation that writes the checkpoint, or the full one that fills the cache).
					at += 60
					_, err := p.Apply(ctx, projection.Input{Events: []projection.Admitted{newEvent(b, k, customer, at)}})
					require.NoError(b, err)
					took := make([]time.Duration, 0, b.N)
					b.ResetTimer()
					for range b.N {
						b.StopTimer()
						at += 60
						ev := newEvent(b, k, customer, at)
						b.StartTimer()
						start := time.Now()
						res, err := p.Apply(ctx, projection.Input{Events: []projection.Admitted{ev}})
						took = append(took, time.Since(start))
						require.NoError(b, err)
						require.Equal(b, int64(1), res.Appended)
					}
					b.StopTimer()
					reportLatencies(b, p, took)
				})
			}
		})
	}
}

// BenchmarkNewEventAlternating is two long customers (n stored events each) whose new events
// alternate, the case that thrashed the entry-bounded cache: with checkpoints each event costs
// its tail only, and the memory stays what the cache bound allows.
func BenchmarkNewEventAlternating(b *testing.B) {
	const n = 50_000
	for _, mode := range []string{"checkpoint", "full"} {
		b.Run(fmt.Sprintf("events=2x%d/derive=%s", n, mode), func(b *testing.B) {
			db := pgtest.New(b)
			k := processortest.NewKit(b, "a"+mode[:1])
			customers := []string{"cus_alt1", "cus_alt2"}
			var at int64
			for _, c := range customers {
				at = max(at, storeHistory(b, db, k, c, n))
			}
			ctx := context.Background()
			p := &projection.Projector{DB: db.Pool, Rules: subscription.DefaultRules(), Cache: projection.NewEventCache(projection.DefaultEventCacheSize),
				Log: processortest.TestLogger(b), Metrics: projection.NewMetrics(prometheus.NewRegistry()), FullDerive: mode == "full"}
			for _, c := range customers {
				at += 60
				_, err := p.Apply(ctx, projection.Input{Events: []projection.Admitted{newEvent(b, k, c, at)}})
				require.NoError(b, err)
			}
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				at += 60
				ev := newEvent(b, k, customers[i%2], at)
				b.StartTimer()
				start := time.Now()
				_, err := p.Apply(ctx, projection.Input{Events: []projection.Admitted{ev}})
				took = append(took, time.Since(start))
				require.NoError(b, err)
			}
			b.StopTimer()
			reportLatencies(b, p, took)
		})
	}
}

// BenchmarkLateEvent is the cost of one late event (the ladder of checkpoints): a
// customer has n stored events, then live ones; each op applies a new event at the head (timed
// apart, new-ms-median) and then one that arrives late, 10 events before the newest (the timed
// op: ms-median, ms-p99). derive=checkpoint resumes the late event from the newest rung before
// it; derive=full, the baseline, derives the whole history for both, as a late event did before
// the ladder (from scratch). derived-events/op is how many events the late event's derivation
// folded (derived_events_total).
func BenchmarkLateEvent(b *testing.B) {
	const back = 10
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			db := pgtest.New(b)
			k := processortest.NewKit(b, "l")
			customer := "cus_late"
			at := storeHistory(b, db, k, customer, n)
			for _, mode := range []string{"checkpoint", "full"} {
				b.Run("derive="+mode, func(b *testing.B) {
					ctx := context.Background()
					m := projection.NewMetrics(prometheus.NewRegistry())
					p := &projection.Projector{DB: db.Pool, Rules: subscription.DefaultRules(), Cache: projection.NewEventCache(projection.DefaultEventCacheSize),
						Log: processortest.TestLogger(b), Metrics: m, FullDerive: mode == "full"}
					apply := func(at int64) time.Duration {
						start := time.Now()
						res, err := p.Apply(ctx, projection.Input{Events: []projection.Admitted{newEvent(b, k, customer, at)}})
						took := time.Since(start)
						require.NoError(b, err)
						require.Equal(b, int64(1), res.Appended)
						return took
					}
					// Live events after the history, so that a late event has newer ones: the
					// first is the scratch derivation that writes the ladder.
					var times []int64
					for range back + 2 {
						at += 60
						times = append(times, at)
						apply(at)
					}
					took := make([]time.Duration, 0, b.N)
					heads := make([]time.Duration, 0, b.N)
					var derived float64
					b.ResetTimer()
					for range b.N {
						b.StopTimer()
						at += 60
						times = append(times, at)
						heads = append(heads, apply(at))
						before := testutil.ToFloat64(m.DerivedEvents)
						b.StartTimer()
						took = append(took, apply(times[len(times)-1-back]+30)) // after the 11th newest: 10 events back
						b.StopTimer()
						derived += testutil.ToFloat64(m.DerivedEvents) - before
					}
					slices.Sort(heads)
					b.ReportMetric(float64(heads[len(heads)/2].Microseconds())/1000, "new-ms-median")
					b.ReportMetric(derived/float64(b.N), "derived-events/op")
					reportLatencies(b, p, took)
				})
			}
		})
	}
}
