package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// history is a customer's life of n realistic events: the signup, then a month of
// subscription renewal after another (customer.subscription.updated with the new period, and
// the paid invoice).
func (k *kit) history(customer string, n int) [][]byte {
	events := k.signup(customer, "u_"+customer, "sub_"+customer, "price_pro", t0)
	for month := int64(1); len(events) < n; month++ {
		at := t0 + 41 + month*30*86400
		events = append(events,
			k.subscription("customer.subscription.updated", customer, "sub_"+customer, "active", "price_pro", at,
				map[string]any{"current_period_start": at - 30*86400, "current_period_end": at, "latest_invoice": "in_prev"}),
			k.invoicePaid(customer, "sub_"+customer, at))
	}
	return events[:n]
}

// BenchmarkReplay re-derives one customer from its stored history: load from Postgres, decode,
// derive, write the customer and user rows, in one transaction (the consumer's and replay's
// transaction). The row is deleted before each run so that it is written every time. cold
// parses every payload, as `processor replay` does; warm has the decoded events cached, as the
// consumer has for a customer it saw before.
func BenchmarkReplay(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		for _, cache := range []string{"cold", "warm"} {
			b.Run(fmt.Sprintf("events=%d/cache=%s", n, cache), func(b *testing.B) {
				db := pgtest.New(b)
				ctx := context.Background()
				k := newKit(b, "b")
				var events []stripeevent.Event
				size := 0
				for _, raw := range k.history("cus_bench", n) {
					ev, err := stripeevent.Parse(raw)
					require.NoError(b, err)
					events = append(events, ev)
					size += len(raw)
				}
				_, err := eventstore.Append(ctx, db.Pool, events)
				require.NoError(b, err)
				p := &projector{db: db.Pool, rules: subscription.DefaultRules(), log: testLogger(b), metrics: newMetrics(prometheus.NewRegistry())}
				if cache == "warm" {
					p.cache = newEventCache(defaultEventCacheSize)
					_, err := p.apply(ctx, projectionInput{Customers: []scope.Key{{ID: "cus_bench"}}, FromScratch: true})
					require.NoError(b, err)
				}
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					_, err := db.Pool.Exec(ctx, `DELETE FROM customer_entitlements`)
					require.NoError(b, err)
					b.StartTimer()
					res, err := p.apply(ctx, projectionInput{Customers: []scope.Key{{ID: "cus_bench"}}, FromScratch: true})
					require.NoError(b, err)
					require.Equal(b, 1, res.Changed)
				}
				b.ReportMetric(float64(size)/float64(n), "payload-bytes/event")
			})
		}
	}
}

// drainFixture is the stream of a migration-sized burst: customers × 5 events (the signup of
// each customer), published once for all sub-benchmarks.
type drainFixture struct {
	ns     *natstest.Server
	js     jetstream.JetStream
	events int
	bytes  int
}

// newDrainFixture publishes the burst. With shuffled, the events of all customers are mixed at
// random (every batch touches ~a batch's worth of customers whose histories keep growing: the
// expensive case); otherwise each customer's events are published together, as a backfill in
// time order would.
func newDrainFixture(b *testing.B, customers int, shuffled bool) *drainFixture {
	b.Helper()
	ns := natstest.StartWithOptions(b, func(o *server.Options) { o.SyncAlways = false })
	js := ns.JetStream(b)
	ctx := context.Background()
	_, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(b, err)

	// One customer's signup is built once and re-keyed per customer with byte replacements.
	const tmpl = "Q7tmpl"
	k := newKit(b, tmpl)
	signup := k.signup("cus_"+tmpl, "u_"+tmpl, "sub_"+tmpl, "price_pro", t0)
	type msg struct {
		customer int
		event    int
	}
	order := make([]msg, 0, customers*len(signup))
	for c := range customers {
		for e := range signup {
			order = append(order, msg{c, e})
		}
	}
	if shuffled {
		r := rand.New(rand.NewPCG(7, 7))
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	f := &drainFixture{ns: ns, js: js, events: len(order)}
	start := time.Now()
	var futures []jetstream.PubAckFuture
	for i, m := range order {
		raw := bytes.ReplaceAll(signup[m.event], []byte(tmpl), fmt.Appendf(nil, "%06d", m.customer))
		f.bytes += len(raw)
		ev, err := stripeevent.Parse(raw)
		require.NoError(b, err)
		fut, err := js.PublishAsync(stream.Subject(ev.CustomerID, ev.Type), raw, jetstream.WithMsgID(ev.ID))
		require.NoError(b, err)
		futures = append(futures, fut)
		if len(futures) == 4000 || i == len(order)-1 {
			for _, fut := range futures {
				select {
				case <-fut.Ok():
				case err := <-fut.Err():
					require.NoError(b, err)
				case <-time.After(time.Minute):
					b.Fatal("publish not acknowledged")
				}
			}
			futures = futures[:0]
		}
	}
	b.Logf("published %d events (%d MB) over %d customers in %s", f.events, f.bytes>>20, customers, time.Since(start).Round(time.Millisecond))
	return f
}

// BenchmarkDrain times a processor draining a burst of 100,000 events over 20,000 customers from
// JetStream into Postgres: from the consumer's start until the stream is fully acknowledged.
// It is for `make bench` (go test -run '^$' -bench Drain -benchtime 1x): publishing the burst
// takes a while.
func BenchmarkDrain(b *testing.B) {
	const customers = 20_000
	for _, order := range []string{"shuffled", "grouped"} {
		b.Run("order="+order, func(b *testing.B) {
			f := newDrainFixture(b, customers, order == "shuffled")
			for _, batch := range []int{500, 1000} { // 250 was slower in both orders (5,400 and 5,800 events/s)
				b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
					for i := range b.N {
						f.drain(b, fmt.Sprintf("bench-%s-%d-%d", order, batch, i), batch)
					}
				})
			}
		})
	}
}

func (f *drainFixture) drain(b *testing.B, durable string, batch int) {
	b.Helper()
	b.StopTimer()
	ctx := context.Background()
	db := pgtest.New(b)
	bb := &bundle{nats: f.ns, js: f.js, db: db, rules: subscription.DefaultRules()}
	opts := defaultConsumerOptions()
	opts.Durable, opts.BatchSize = durable, batch
	b.StartTimer()
	start := time.Now()
	in := bb.start(b, opts, db.URL)
	bb.drained(b, durable, 10*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	require.NoError(b, in.stop())
	require.Equal(b, f.events, storedEvents(b, db.Pool))
	var rows int
	require.NoError(b, db.Pool.QueryRow(ctx, `SELECT count(*) FROM customer_entitlements`).Scan(&rows))
	require.Equal(b, f.events/5, rows)
	b.ReportMetric(float64(f.events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(elapsed.Seconds(), "s/drain")
	b.StartTimer()
}
