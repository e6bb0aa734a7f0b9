package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
)

// BenchmarkAckSyncAlways is what a drain costs the stream under `sync_interval: always`: 20,000
// stored 3 KB events fetched 1,000 at a time and acknowledged one by one, as the processor does.
// retention=workqueue is the stream of a development build (WorkQueuePolicy): each ack removes a
// message, and the server fsyncs each removal. retention=limits+purge is the stream as
// stream.Config makes it: acks only move the consumer, and one purge up to its ack floor per
// batch removes the batch (what the processor does).
// msgs/s counts from the first fetch until every message is acknowledged (and, for limits+purge,
// purged).
func BenchmarkAckSyncAlways(b *testing.B) {
	for _, mode := range []string{"workqueue", "limits+purge"} {
		b.Run("retention="+mode, func(b *testing.B) {
			for range b.N {
				ackDrain(b, mode == "workqueue")
			}
		})
	}
}

func ackDrain(b *testing.B, workQueue bool) {
	b.Helper()
	b.StopTimer()
	const n, batch = 20_000, 1_000
	js := natstest.StartWithOptions(b, func(o *server.Options) { o.SyncAlways = true }).JetStream(b)
	ctx := context.Background()
	cfg := stream.Config(stream.Options{})
	if workQueue {
		cfg.Retention = jetstream.WorkQueuePolicy
	}
	st, err := js.CreateStream(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 3000)
	for i := range n {
		if _, err := js.PublishAsync(stream.Subject(fmt.Sprintf("cus_%d", i%500), "invoice.paid"), payload); err != nil {
			b.Fatal(err)
		}
		if i%batch == batch-1 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy,
		MaxAckPending: 10 * batch})
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	var purged uint64
	for got := 0; got < n; {
		msgs, err := cons.Fetch(batch, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		for m := range msgs.Messages() {
			if err := m.Ack(); err != nil {
				b.Fatal(err)
			}
			got++
		}
		if !workQueue {
			if purged, err = stream.PurgeApplied(ctx, js, cons, purged); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Done when the server has applied every ack (and purge): the stream is empty.
	for {
		info, err := st.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if !workQueue {
			if purged, err = stream.PurgeApplied(ctx, js, cons, purged); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(n/elapsed.Seconds(), "msgs/s")
	b.StartTimer()
}
