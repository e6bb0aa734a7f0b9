package stream_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
)

// BenchmarkDuplicateWindowMemory is what the stream's duplicate window costs the NATS server's
// memory: 50,000 events of 1 KB are published to an embedded server, the stream is purged (as the
// processor purges applied events), and the server's heap is measured after a GC, per event.
// msgid=none publishes without a Nats-Msg-Id (the baseline: no dedupe entry); msgid=event with
// the event id, as the listener does, so the difference is the entry each id keeps for the whole
// window whatever is purged. B/event is that heap growth per published event; it is held for
// DuplicateWindow, so the window holds rate × window × B/event.
func BenchmarkDuplicateWindowMemory(b *testing.B) {
	for _, withID := range []bool{false, true} {
		name := "msgid=none"
		if withID {
			name = "msgid=event"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				dedupeHeap(b, withID)
			}
		})
	}
}

func dedupeHeap(b *testing.B, withID bool) {
	b.Helper()
	b.StopTimer()
	const n = 50_000
	ns := natstest.Start(b)
	js := ns.JetStream(b)
	ctx := context.Background()
	s, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(b, err)
	payload := make([]byte, 1024)
	for i := range payload {
		payload[i] = 'x'
	}
	before := heapAfterGC()
	b.StartTimer()
	futures := make([]jetstream.PubAckFuture, 0, 4000)
	for i := range n {
		var opts []jetstream.PublishOpt
		id := fmt.Sprintf("evt_1Q%022d", i) // a Stripe event id's length (28 bytes)
		if withID {
			opts = append(opts, jetstream.WithMsgID(id))
		}
		fut, err := js.PublishAsync(stream.Subject(fmt.Sprintf("cus_%010d", i%6000), "customer.subscription.updated"), payload, opts...)
		require.NoError(b, err)
		futures = append(futures, fut)
		if len(futures) == cap(futures) || i == n-1 {
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					require.NoError(b, err)
				case <-time.After(time.Minute):
					b.Fatal("publish not acknowledged")
				}
			}
			futures = futures[:0]
		}
	}
	require.NoError(b, s.Purge(ctx))
	b.StopTimer()
	after := heapAfterGC()
	b.ReportMetric(float64(int64(after)-int64(before))/n, "B/event")
	ns.Shutdown()
	b.StartTimer()
}

// heapAfterGC is the live heap after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
