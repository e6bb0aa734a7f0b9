package ingest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/ingest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// A processor of a one-node (R1) install restarted on a three-node cluster with
// STREAM_REPLICAS=3 raises the stream, and the durable consumer, which sets no replicas of its
// own, follows it to R3 with its position; the loss of the consumer's leader then loses no
// delivery. A limits stream of an earlier release (MaxAge 30 days) is updated in place to R3.
func TestStartConsumerRaisesReplicasOnCluster(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	js := c.JetStream(t)
	ctx := t.Context()
	log := processortest.TestLogger(t)
	opts := processortest.TestOptions()

	cons, err := ingest.StartConsumer(ctx, js, stream.Options{}, nil, nil, opts, log, nil)
	require.NoError(t, err)
	waitConsumerReplicas(t, cons, 1)
	for i := range 5 {
		_, err := js.Publish(ctx, stream.Subject("cus_1", "invoice.paid"), []byte("{}"), jetstream.WithMsgID(fmt.Sprint("evt_", i)))
		require.NoError(t, err)
	}
	fetchAck(t, cons, 2) // applied

	cons, err = ingest.StartConsumer(ctx, js, stream.Options{Replicas: 3}, nil, nil, opts, log, nil)
	require.NoError(t, err)
	info := waitConsumerReplicas(t, cons, 3)
	require.EqualValues(t, 3, info.NumPending, "the consumer kept its position")
	require.Zero(t, info.NumAckPending)
	s, err := js.Stream(ctx, stream.Name)
	require.NoError(t, err)
	require.Equal(t, 3, s.CachedInfo().Config.Replicas)

	// A processor starting without STREAM_REPLICAS keeps R3, its consumer too.
	cons, err = ingest.StartConsumer(ctx, js, stream.Options{}, nil, nil, opts, log, nil)
	require.NoError(t, err)
	waitConsumerReplicas(t, cons, 3)

	old := info.Cluster.Leader
	c.Node(t, old).Shutdown()
	wait.For(t, 30*time.Second, "a new consumer leader", func() bool {
		i, err := cons.JsConsumer().Info(ctx)
		return err == nil && i.Cluster != nil && i.Cluster.Leader != "" && i.Cluster.Leader != old
	})
	require.Equal(t, []string{"evt_2", "evt_3", "evt_4"}, fetchAck(t, cons, 3))
	c.Restart(t, c.Node(t, old))

	// An earlier release's limits stream at R1, MaxAge 30 days: the start updates it in place
	// to STREAM_REPLICAS and MaxAge 0, with what it holds; the consumer is created again on it.
	require.NoError(t, js.DeleteStream(ctx, stream.Name))
	earlier := stream.Config(stream.Options{Replicas: 1})
	earlier.MaxAge = 30 * 24 * time.Hour
	_, err = js.CreateStream(ctx, earlier)
	require.NoError(t, err)
	_, err = js.Publish(ctx, stream.Subject("cus_1", "invoice.paid"), []byte("{}"), jetstream.WithMsgID("evt_5"))
	require.NoError(t, err)
	cons, err = ingest.StartConsumer(ctx, js, stream.Options{Replicas: 3}, nil, nil, opts, log, nil)
	require.NoError(t, err)
	s, err = js.Stream(ctx, stream.Name)
	require.NoError(t, err)
	require.Equal(t, 3, s.CachedInfo().Config.Replicas, "the stream has STREAM_REPLICAS")
	require.Zero(t, s.CachedInfo().Config.MaxAge)
	waitConsumerReplicas(t, cons, 3)
	require.Equal(t, []string{"evt_5"}, fetchAck(t, cons, 1))
}

// A processor starting on an earlier release's limits stream (MaxAge 30 days) without
// STREAM_REPLICAS updates it in place to MaxAge 0, keeping its replicas and size; on a
// work-queue stream of a development build it consumes (draining it is the first step of its
// removal) and leaves the stream as it is.
func TestStartConsumerOnEarlierStreams(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		retention jetstream.RetentionPolicy
		maxAge    time.Duration
	}{
		{"earlier release", jetstream.LimitsPolicy, 30 * 24 * time.Hour},
		{"development build", jetstream.WorkQueuePolicy, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			js := natstest.Start(t).JetStream(t)
			ctx := t.Context()
			cfg := stream.Config(stream.Options{MaxBytes: 1 << 30})
			cfg.Retention, cfg.MaxAge = tt.retention, tt.maxAge
			_, err := js.CreateStream(ctx, cfg)
			require.NoError(t, err)
			_, err = js.Publish(ctx, stream.Subject("cus_1", "invoice.paid"), []byte("{}"), jetstream.WithMsgID("evt_1"))
			require.NoError(t, err)

			cons, err := ingest.StartConsumer(ctx, js, stream.Options{}, nil, nil, processortest.TestOptions(), processortest.TestLogger(t), nil)
			require.NoError(t, err)
			s, err := js.Stream(ctx, stream.Name)
			require.NoError(t, err)
			got := s.CachedInfo().Config
			require.Zero(t, got.MaxAge)
			require.Equal(t, tt.retention, got.Retention)
			require.EqualValues(t, 1<<30, got.MaxBytes, "the operator's size limit kept")
			require.Equal(t, []string{"evt_1"}, fetchAck(t, cons, 1))
		})
	}
}

// waitConsumerReplicas waits until the durable consumer has the replicas, every one current.
func waitConsumerReplicas(t *testing.T, c *ingest.Consumer, replicas int) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	wait.For(t, 30*time.Second, fmt.Sprintf("consumer at R%d", replicas), func() bool {
		var err error
		if info, err = c.JsConsumer().Info(t.Context()); err != nil || info.Cluster == nil || info.Cluster.Leader == "" ||
			len(info.Cluster.Replicas) != replicas-1 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return true
	})
	return info
}

// fetchAck fetches n messages, acknowledges them and returns their ids.
func fetchAck(t *testing.T, c *ingest.Consumer, n int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		batch, err := c.JsConsumer().Fetch(n-len(ids), jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			require.NoError(t, m.DoubleAck(t.Context()))
			ids = append(ids, m.Headers().Get(nats.MsgIdHdr))
		}
	}
	return ids
}
