package stream_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// replicatedWithin bounds the wait for new replicas to catch up with the stream's leader.
const replicatedWithin = 30 * time.Second

// An operator who ran one node (R1) moves to a three-node cluster and sets STREAM_REPLICAS=3:
// the Ensure of a listener or processor starting raises the stream to R3 with every stored
// message and the dedupe window, a later start without the variable keeps R3, the loss of the
// leader after the raise loses nothing, and STREAM_REPLICAS=1, set explicitly, scales it down
// (CONTRACT.md: an existing stream keeps the operator's setting unless the variable is set).
func TestEnsureRaisesReplicasOnCluster(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	js := c.JetStream(t)
	ctx := t.Context()

	s, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(t, err)
	require.Equal(t, 1, s.CachedInfo().Config.Replicas, "created as on one node")
	for i := range 10 {
		publish(t, js, i, false)
	}
	// The processor applied (acked) the first three and purged them up to its ack floor: they
	// left the stream, their ids stay in the window.
	cons, err := js.CreateOrUpdateConsumer(ctx, stream.Name, jetstream.ConsumerConfig{Durable: "p", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := cons.Fetch(3)
	require.NoError(t, err)
	for m := range batch.Messages() {
		require.NoError(t, m.DoubleAck(ctx))
	}
	require.NoError(t, batch.Error())
	floor, err := stream.PurgeApplied(ctx, js, cons, 0)
	require.NoError(t, err)
	require.EqualValues(t, 3, floor)
	stored := []int{3, 4, 5, 6, 7, 8, 9}

	began := time.Now()
	_, err = stream.Ensure(ctx, js, stream.Options{Replicas: 3})
	require.NoError(t, err)
	info := waitReplicated(t, js, 3)
	t.Logf("R1 -> R3: every follower current after %s", time.Since(began))
	require.Equal(t, stream.DuplicateWindow, info.Config.Duplicates)
	requireStored(t, js, stored)
	for _, i := range []int{1, 5} { // one applied, one stored
		publish(t, js, i, true)
	}
	requireStored(t, js, stored)
	// The consumer was created with no replicas of its own: JetStream scales it with the stream.
	requireConsumerReplicas(t, js, "p", 3)

	// A start without STREAM_REPLICAS keeps the operator's R3.
	s, err = stream.Ensure(ctx, js, stream.Options{})
	require.NoError(t, err)
	require.Equal(t, 3, s.CachedInfo().Config.Replicas, "STREAM_REPLICAS unset must not scale down")

	// The leader, the node that held the R1 stream, dies: a new replica leads with everything.
	old := info.Cluster.Leader
	began = time.Now()
	c.Node(t, old).Shutdown()
	wait.For(t, replicatedWithin, "a new stream leader", func() bool {
		i, err := streamInfo(t, js)
		return err == nil && i.Cluster != nil && i.Cluster.Leader != "" && i.Cluster.Leader != old
	})
	t.Logf("leader %s shut down: a new leader after %s", old, time.Since(began))
	requireStored(t, js, stored)
	// A stored event's id is still a duplicate. An applied one's (evt_1) is not asked: a server
	// rebuilds its dedupe ids from the messages it stores, so a new leader, like one node
	// restarted, has forgotten the ids of messages purged (the event store's
	// primary key makes such a republish a no-op).
	publish(t, js, 5, true)
	publish(t, js, 10, false)
	stored = append(stored, 10)
	began = time.Now()
	c.Restart(t, c.Node(t, old))
	waitReplicated(t, js, 3)
	t.Logf("%s restarted: current again after %s", old, time.Since(began))
	requireStored(t, js, stored)

	// STREAM_REPLICAS=1 set explicitly is the operator's setting: applied, nothing lost.
	s, err = stream.Ensure(ctx, js, stream.Options{Replicas: 1})
	require.NoError(t, err)
	require.Equal(t, 1, s.CachedInfo().Config.Replicas)
	waitReplicated(t, js, 1)
	requireStored(t, js, stored)
	publish(t, js, 5, true)
	requireConsumerReplicas(t, js, "p", 1)
}

// An earlier release's limits stream (MaxAge 30 days) at R1 on a cluster with STREAM_REPLICAS=3:
// Ensure updates it in place, to R3 and MaxAge 0, with every message it holds.
func TestEnsureUpdatesAnEarlierReleaseStreamOnCluster(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	js := c.JetStream(t)
	ctx := t.Context()
	earlier := stream.Config(stream.Options{})
	earlier.MaxAge = 30 * 24 * time.Hour
	_, err := js.CreateStream(ctx, earlier)
	require.NoError(t, err)
	for i := range 5 {
		publish(t, js, i, false)
	}
	_, err = stream.Ensure(ctx, js, stream.Options{Replicas: 3})
	require.NoError(t, err)
	info := waitReplicated(t, js, 3)
	require.Zero(t, info.Config.MaxAge)
	require.Equal(t, jetstream.LimitsPolicy, info.Config.Retention)
	requireStored(t, js, []int{0, 1, 2, 3, 4})
	publish(t, js, 4, true)
	publish(t, js, 5, false)
	requireStored(t, js, []int{0, 1, 2, 3, 4, 5})
}

func eventID(i int) string { return fmt.Sprint("evt_", i) }

// publish publishes event i of customer cus_1 and requires JetStream to call it a duplicate or not.
func publish(t *testing.T, js jetstream.JetStream, i int, duplicate bool) {
	t.Helper()
	ack, err := js.Publish(t.Context(), stream.Subject("cus_1", "invoice.paid"), []byte(eventID(i)), jetstream.WithMsgID(eventID(i)))
	require.NoError(t, err)
	require.Equal(t, duplicate, ack.Duplicate, "publish %s: duplicate", eventID(i))
}

func streamInfo(t *testing.T, js jetstream.JetStream) (*jetstream.StreamInfo, error) {
	t.Helper()
	s, err := js.Stream(t.Context(), stream.Name)
	if err != nil {
		return nil, err
	}
	return s.Info(t.Context())
}

// waitReplicated waits until the stream has the replicas and every follower is current.
func waitReplicated(t *testing.T, js jetstream.JetStream, replicas int) *jetstream.StreamInfo {
	t.Helper()
	var info *jetstream.StreamInfo
	wait.For(t, replicatedWithin, fmt.Sprintf("stream at R%d with every follower current", replicas), func() bool {
		var err error
		if info, err = streamInfo(t, js); err != nil || info.Config.Replicas != replicas || info.Cluster == nil ||
			info.Cluster.Leader == "" || len(info.Cluster.Replicas) != replicas-1 {
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

// requireStored requires the stream to hold exactly the events, in order.
func requireStored(t *testing.T, js jetstream.JetStream, events []int) {
	t.Helper()
	s, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, len(events), info.State.Msgs)
	var got []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			require.ErrorIs(t, err, jetstream.ErrMsgNotFound)
			continue
		}
		got = append(got, m.Header.Get(nats.MsgIdHdr))
	}
	want := make([]string, len(events))
	for i, e := range events {
		want[i] = eventID(e)
	}
	require.Equal(t, want, got)
}

// requireConsumerReplicas waits until the durable consumer has the replicas, every one current.
func requireConsumerReplicas(t *testing.T, js jetstream.JetStream, durable string, replicas int) {
	t.Helper()
	wait.For(t, replicatedWithin, fmt.Sprintf("consumer %s at R%d", durable, replicas), func() bool {
		cons, err := js.Consumer(t.Context(), stream.Name, durable)
		if err != nil {
			return false
		}
		info, err := cons.Info(t.Context())
		if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != replicas-1 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return true
	})
}
