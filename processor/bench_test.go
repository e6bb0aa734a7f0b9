package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/projection"

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
	"github.com/tollgate/tollgate/testkit/wait"
)

// history is a customer's life of n realistic events: the signup, then a month of
// subscription renewal after another (customer.subscription.updated with the new period, and
// the paid invoice).
func kitHistory(k *processortest.Kit, customer string, n int) [][]byte {
	events := k.Signup(customer, "u_"+customer, "sub_"+customer, "price_pro", processortest.T0)
	for month := int64(1); len(events) < n; month++ {
		at := processortest.T0 + 41 + month*30*86400
		events = append(events,
			k.Subscription("customer.subscription.updated", customer, "sub_"+customer, "active", "price_pro", at,
				map[string]any{"current_period_start": at - 30*86400, "current_period_end": at, "latest_invoice": "in_prev"}),
			k.InvoicePaid(customer, "sub_"+customer, at))
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
				k := processortest.NewKit(b, "b")
				var events []stripeevent.Event
				size := 0
				for _, raw := range kitHistory(k, "cus_bench", n) {
					ev, err := stripeevent.Parse(raw)
					require.NoError(b, err)
					events = append(events, ev)
					size += len(raw)
				}
				_, err := eventstore.Append(ctx, db.Pool, events)
				require.NoError(b, err)
				p := &projection.Projector{DB: db.Pool, Rules: subscription.DefaultRules(), Log: processortest.TestLogger(b), Metrics: projection.NewMetrics(prometheus.NewRegistry())}
				if cache == "warm" {
					p.Cache = projection.NewEventCache(projection.DefaultEventCacheSize)
					_, err := p.Apply(ctx, projection.Input{Customers: []scope.Key{{ID: "cus_bench"}}, FromScratch: true})
					require.NoError(b, err)
				}
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					_, err := db.Pool.Exec(ctx, `DELETE FROM customer_entitlements`)
					require.NoError(b, err)
					b.StartTimer()
					res, err := p.Apply(ctx, projection.Input{Customers: []scope.Key{{ID: "cus_bench"}}, FromScratch: true})
					require.NoError(b, err)
					require.Equal(b, 1, res.Changed)
				}
				b.ReportMetric(float64(size)/float64(n), "payload-bytes/event")
			})
		}
	}
}

// drainFixture is a migration-sized burst: customers × 5 events (the signup of each customer),
// built once for all sub-benchmarks and published into a fresh stream for each drain (a drain
// purges what it applied).
type drainFixture struct {
	customers int
	msgs      []drainMsg
	bytes     int
}

type drainMsg struct {
	subject, id string
	raw         []byte
}

// newDrainFixture builds the burst. With shuffled, the events of all customers are mixed at
// random (every batch touches ~a batch's worth of customers whose histories keep growing: the
// expensive case); otherwise each customer's events are published together, as a backfill in
// time order would.
func newDrainFixture(b *testing.B, customers int, shuffled bool) *drainFixture {
	b.Helper()
	// One customer's signup is built once and re-keyed per customer with byte replacements.
	const tmpl = "Q7tmpl"
	k := processortest.NewKit(b, tmpl)
	signup := k.Signup("cus_"+tmpl, "u_"+tmpl, "sub_"+tmpl, "price_pro", processortest.T0)
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
	f := &drainFixture{customers: customers, msgs: make([]drainMsg, 0, len(order))}
	for _, m := range order {
		raw := bytes.ReplaceAll(signup[m.event], []byte(tmpl), fmt.Appendf(nil, "%06d", m.customer))
		f.bytes += len(raw)
		ev, err := stripeevent.Parse(raw)
		require.NoError(b, err)
		f.msgs = append(f.msgs, drainMsg{subject: stream.Subject(ev.CustomerID, ev.Type), id: ev.ID, raw: raw})
	}
	return f
}

// publish starts an embedded NATS server, with every write fsynced when syncAlways (nats-server's
// `sync_interval: always`, what docker-compose.yml runs) or fsynced every two minutes (its
// default) otherwise, and publishes the burst into the stream.
func (f *drainFixture) Publish(b *testing.B, syncAlways bool) (*natstest.Server, jetstream.JetStream) {
	b.Helper()
	ns := natstest.StartWithOptions(b, func(o *server.Options) { o.SyncAlways = syncAlways })
	js := ns.JetStream(b)
	ctx := context.Background()
	_, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(b, err)
	start := time.Now()
	var futures []jetstream.PubAckFuture
	for i, m := range f.msgs {
		fut, err := js.PublishAsync(m.subject, m.raw, jetstream.WithMsgID(m.id))
		require.NoError(b, err)
		futures = append(futures, fut)
		if len(futures) == 4000 || i == len(f.msgs)-1 {
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
	b.Logf("published %d events (%d MB) over %d customers in %s", len(f.msgs), f.bytes>>20, f.customers, time.Since(start).Round(time.Millisecond))
	return ns, js
}

// BenchmarkDrain times a processor draining a burst of 100,000 events over 20,000 customers from
// JetStream into Postgres: from the consumer's start until the stream is fully acknowledged and
// purged. sync=always runs nats-server with `sync_interval: always` (docker-compose.yml, the
// e2e bench), sync=default with its default. It is for `make bench` (go test -run '^$' -bench
// Drain -benchtime 1x): publishing the burst takes a while, longest with sync=always.
func BenchmarkDrain(b *testing.B) {
	const customers = 20_000
	for _, order := range []string{"shuffled", "grouped"} {
		b.Run("order="+order, func(b *testing.B) {
			f := newDrainFixture(b, customers, order == "shuffled")
			for _, batch := range []int{500, 1000} { // 250 was slower in both orders (5,400 and 5,800 events/s)
				b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
					for _, fsync := range []string{"always", "default"} {
						b.Run("sync="+fsync, func(b *testing.B) {
							for i := range b.N {
								f.drain(b, fmt.Sprintf("bench-%s-%d-%d", order, batch, i), batch, fsync == "always")
							}
						})
					}
				})
			}
		})
	}
}

func (f *drainFixture) drain(b *testing.B, durable string, batch int, syncAlways bool) {
	b.Helper()
	b.StopTimer()
	ctx := context.Background()
	ns, js := f.Publish(b, syncAlways)
	db := pgtest.New(b)
	bb := &processortest.Bundle{Nats: ns, JS: js, DB: db, Rules: subscription.DefaultRules()}
	opts := ingest.DefaultOptions()
	opts.Durable, opts.BatchSize = durable, batch
	b.StartTimer()
	start := time.Now()
	in := bb.Start(b, opts, db.URL)
	bb.Drained(b, durable, 10*time.Minute)
	wait.For(b, time.Minute, "the stream purged", func() bool {
		s, err := js.Stream(ctx, stream.Name)
		return err == nil && s.CachedInfo().State.Msgs == 0
	})
	elapsed := time.Since(start)
	b.StopTimer()
	require.NoError(b, in.Stop())
	events := len(f.msgs)
	require.Equal(b, events, processortest.StoredEvents(b, db.Pool))
	var rows int
	require.NoError(b, db.Pool.QueryRow(ctx, `SELECT count(*) FROM customer_entitlements`).Scan(&rows))
	require.Equal(b, events/5, rows)
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(elapsed.Seconds(), "s/drain")
	b.StartTimer()
}
