package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
)

// retainSetup is a stream of n events (evt_1 … evt_n) and a durable consumer that acknowledged
// the first acked of them.
func retainSetup(t *testing.T, opts stream.Options, n, acked int) (jetstream.JetStream, jetstream.Stream, jetstream.Consumer) {
	t.Helper()
	js := natstest.Start(t).JetStream(t)
	ctx := context.Background()
	s, err := stream.Ensure(ctx, js, opts)
	require.NoError(t, err)
	for i := 1; i <= n; i++ {
		_, err := js.Publish(ctx, stream.Subject("cus_1", "invoice.paid"), []byte(fmt.Sprintf(`{"id":"evt_%d"}`, i)),
			jetstream.WithMsgID(fmt.Sprint("evt_", i)))
		require.NoError(t, err)
	}
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "p", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	if acked > 0 {
		batch, err := cons.Fetch(acked, jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			require.NoError(t, m.DoubleAck(ctx))
		}
	}
	return js, s, cons
}

func msgs(t *testing.T, s jetstream.Stream) (count, first uint64) {
	t.Helper()
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs, info.State.FirstSeq
}

// An applied event stays in the stream for Keep after the purge that saw it applied, then goes;
// nothing above the ack floor ever goes.
func TestRetainerKeepsAppliedEventsForTheWindow(t *testing.T) {
	t.Parallel()
	js, s, cons := retainSetup(t, stream.Options{}, 10, 6)
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	r := &stream.Retainer{Keep: 10 * time.Minute, Now: func() time.Time { return now }}

	purged, err := r.Purge(ctx, js, cons)
	require.NoError(t, err)
	require.Zero(t, purged, "applied just now: kept")
	n, _ := msgs(t, s)
	require.Equal(t, uint64(10), n)

	now = now.Add(9 * time.Minute)
	purged, err = r.Purge(ctx, js, cons)
	require.NoError(t, err)
	require.Zero(t, purged, "applied 9 minutes ago: kept")

	now = now.Add(time.Minute)
	purged, err = r.Purge(ctx, js, cons)
	require.NoError(t, err)
	require.Equal(t, uint64(6), purged, "applied 10 minutes ago: purged up to the floor seen then")
	n, first := msgs(t, s)
	require.Equal(t, uint64(4), n)
	require.Equal(t, uint64(7), first, "the first unapplied event is kept")

	// Keep 0 is PurgeApplied's rule: up to the floor at once, never past it.
	r0 := &stream.Retainer{}
	purged, err = r0.Purge(ctx, js, cons)
	require.NoError(t, err)
	require.Equal(t, uint64(6), purged)
}

// Applied events never crowd out new ones: past half the stream's MaxBytes the window yields.
func TestRetainerYieldsToSpace(t *testing.T) {
	t.Parallel()
	js, s, cons := retainSetup(t, stream.Options{MaxBytes: 4000}, 20, 15)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	require.Greater(t, info.State.Bytes, uint64(2000), "the setup fills the stream over half")
	r := &stream.Retainer{Keep: time.Hour}
	purged, err := r.Purge(context.Background(), js, cons)
	require.NoError(t, err)
	require.Equal(t, uint64(15), purged, "over half full: purged to the floor")
	n, first := msgs(t, s)
	require.Equal(t, uint64(5), n)
	require.Equal(t, uint64(16), first)
}

// ReadRetained gives back what the stream holds, applied or not, in order, and only what was
// stored since the time asked.
func TestReadRetained(t *testing.T) {
	t.Parallel()
	js, _, _ := retainSetup(t, stream.Options{}, 8, 3)
	ctx := context.Background()
	var ids []string
	n, err := stream.ReadRetained(ctx, js, time.Time{}, func(m stream.Retained) error {
		ids = append(ids, string(m.Data))
		require.Equal(t, uint64(len(ids)), m.Seq)
		require.Equal(t, fmt.Sprint("evt_", len(ids)), m.MsgID)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 8, n)
	require.JSONEq(t, `{"id":"evt_8"}`, ids[7])

	n, err = stream.ReadRetained(ctx, js, time.Now().Add(time.Hour), func(stream.Retained) error { return nil })
	require.NoError(t, err)
	require.Zero(t, n, "nothing stored in the future")

	empty := natstest.Start(t).JetStream(t)
	_, err = stream.Ensure(ctx, empty, stream.Options{})
	require.NoError(t, err)
	n, err = stream.ReadRetained(ctx, empty, time.Time{}, func(stream.Retained) error { return nil })
	require.NoError(t, err)
	require.Zero(t, n)
}
