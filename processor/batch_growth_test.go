package main

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/processor/internal/processortest"
)

// A backlog grows the batches (twice as large after each full one, up to MaxBatch, bounded by
// BatchBytes), and the first batch under BatchSize brings them back: every event is applied
// once, whatever the sizes, a message larger than the byte bound included.
func TestBacklogGrowsTheBatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		batchBytes int
		maxBatches int // at most this many batches for the backlog
	}{
		// 600 events: 25, 25 (fetched ahead), 50, 100, 200, 200: about 6 batches, not 24.
		{"by count", 32 << 20, 12},
		// Every event is over 1 KB: a grown fetch takes one or two, the next is BatchSize again.
		{"by bytes", 1500, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := processortest.NewKit(t, "g")
			events := processortest.ShuffledWithDuplicates(4, k.Population(120))
			opts := processortest.TestOptions()
			opts.BatchSize, opts.MaxBatch, opts.BatchBytes = 25, 200, tc.batchBytes
			opts.BatchTime = time.Minute // grow whatever the machine's speed
			opts.AckWait, opts.TxTimeout = 20*time.Second, 15*time.Second

			b := processortest.Setup(t)
			b.Publish(t, events...)
			in := b.Start(t, opts, b.DB.URL)
			want := processortest.Expect(t, b.Rules, events...)
			processortest.CaughtUp(t, b.DB.Pool, want, 30*time.Second)
			b.Drained(t, opts.Durable, 10*time.Second)

			var m dto.Metric
			require.NoError(t, in.Metrics.BatchSize.Write(&m))
			batches, messages := m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			// The stream holds each event once (its duplicates share its Nats-Msg-Id).
			require.Equal(t, processortest.StoredEvents(t, b.DB.Pool), int(messages), "each message in one batch")
			require.LessOrEqual(t, batches, uint64(tc.maxBatches))
			if tc.batchBytes > 1<<20 {
				require.Greater(t, messages/float64(batches), float64(opts.BatchSize), "batches grew past BatchSize")
			}

			// The backlog is gone: a lone event is fetched by a batch of BatchSize, at once.
			late := k.Population(1)
			b.Publish(t, late...)
			processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, append(events, late...)...), 10*time.Second)
		})
	}
}
