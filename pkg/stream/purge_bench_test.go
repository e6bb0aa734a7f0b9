package stream_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
)

// BenchmarkPurgeEvery is what purging the applied events costs the NATS server during a burst
// drain: 40,000 events of 1 KB over 6,000 customers (6,000 subjects: one a customer) fetched
// 1,000 at a time and acknowledged, as the processor does, with default sync. purge=batch
// purges to the ack floor after every batch (the processor's policy), purge=10batches after
// every tenth (what purging at most once a second does at 10,000 events/s). A purge rewrites the
// stream's whole state, one entry a subject, whatever it removes, so its cost grows with the
// customers in the backlog, not with the events purged. cpu-ms/purge is this process's CPU
// (client and embedded server) over the drain, per purge, above what the same drain with no purge
// at all costs (purge=none, the baseline, run first).
func BenchmarkPurgeEvery(b *testing.B) {
	var baseCPU time.Duration
	for _, every := range []int{0, 1, 10} {
		name := map[int]string{0: "none", 1: "batch", 10: "10batches"}[every]
		b.Run("purge="+name, func(b *testing.B) {
			for range b.N {
				cpu, purges := purgeDrain(b, every)
				if every == 0 {
					baseCPU = cpu
					continue
				}
				b.ReportMetric(float64(cpu-baseCPU)/float64(time.Millisecond)/float64(max(purges, 1)), "cpu-ms/purge")
				b.ReportMetric(float64(purges), "purges")
			}
		})
	}
}

func purgeDrain(b *testing.B, every int) (cpu time.Duration, purges int) {
	b.Helper()
	b.StopTimer()
	const n, batch, customers = 40_000, 1_000, 6_000
	js := natstest.Start(b).JetStream(b)
	ctx := context.Background()
	st, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(b, err)
	payload := make([]byte, 1024)
	for i := range n {
		_, err := js.PublishAsync(stream.Subject(fmt.Sprintf("cus_%06d", i%customers), "customer.subscription.updated"), payload)
		require.NoError(b, err)
		if i%batch == batch-1 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy,
		MaxAckPending: 20 * batch})
	require.NoError(b, err)
	cpuStart := cpuTime()
	b.StartTimer()
	start := time.Now()
	var purged uint64
	for got, batches := 0, 0; got < n; batches++ {
		msgs, err := cons.Fetch(batch, jetstream.FetchMaxWait(10*time.Second))
		require.NoError(b, err)
		var ms []jetstream.Msg
		for m := range msgs.Messages() {
			ms = append(ms, m)
		}
		got += len(ms)
		for i, m := range ms {
			if i == len(ms)-1 {
				require.NoError(b, m.DoubleAck(ctx)) // the acks before it are in: the floor moved
				continue
			}
			require.NoError(b, m.Ack())
		}
		if len(ms) > 0 && every > 0 && batches%every == every-1 {
			if purged, err = stream.PurgeApplied(ctx, js, cons, purged); err != nil {
				b.Fatal(err)
			}
			purges++
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu = cpuTime() - cpuStart
	b.ReportMetric(n/elapsed.Seconds(), "msgs/s")
	b.StartTimer()
	return cpu, purges
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
