package stream_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
)

func TestSubject(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, customer, typ, want string }{
		{"customer event", "cus_123", "customer.subscription.updated", "stripe.events.cus_123.customer.subscription.updated"},
		{"no customer", "", "product.created", "stripe.events._none.product.created"},
		{"hostile id", "cus.*>x y", "invoice.paid", "stripe.events.cus___x_y.invoice.paid"},
		{"empty type part", "cus_1", "a..b", "stripe.events.cus_1.a._.b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, stream.Subject(tt.customer, tt.typ))
		})
	}
}

func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	s, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(t, err)
	_, err = stream.Ensure(ctx, js, stream.Options{MaxBytes: 1 << 30})
	require.NoError(t, err)

	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, jetstream.FileStorage, info.Config.Storage)
	require.Equal(t, stream.DuplicateWindow, info.Config.Duplicates)
	require.Equal(t, int64(1<<30), info.Config.MaxBytes)
	require.Equal(t, jetstream.DiscardNew, info.Config.Discard)

	// A process starting with zero options keeps what the operator set on the stream.
	_, err = stream.Ensure(ctx, js, stream.Options{})
	require.NoError(t, err)
	info, err = s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1<<30), info.Config.MaxBytes, "operator's max bytes kept")
	require.Equal(t, 1, info.Config.Replicas)

	// The event id as Nats-Msg-Id drops a duplicate.
	subj := stream.Subject("cus_1", "customer.created")
	ack, err := js.Publish(ctx, subj, []byte(`{}`), jetstream.WithMsgID("evt_1"))
	require.NoError(t, err)
	require.False(t, ack.Duplicate)
	ack, err = js.Publish(ctx, subj, []byte(`{}`), jetstream.WithMsgID("evt_1"))
	require.NoError(t, err)
	require.True(t, ack.Duplicate)
	info, err = s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs)
}

// A 5,000-byte customer id or type once made a subject longer than the server's 4,096-byte
// protocol line: the server closed the connection and nats.go did not reconnect.
func TestSubjectStaysShortWhateverTheInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("c", 5000)
	dots := strings.Repeat("a.", 2500)
	for _, tt := range []struct{ name, customer, typ string }{
		{"long customer", long, "invoice.paid"},
		{"long type", "cus_1", long},
		{"many type tokens", "cus_1", dots},
		{"both", long, dots},
	} {
		subj := stream.Subject(tt.customer, tt.typ)
		require.LessOrEqual(t, len(subj), 400, tt.name)
		require.NotEqual(t, subj, stream.Subject(tt.customer+"x", tt.typ+"x"), "distinct inputs keep distinct subjects")
	}

	// Through a real server: the publish is acknowledged and the connection survives.
	js := natstest.Start(t).JetStream(t)
	_, err := stream.Ensure(t.Context(), js, stream.Options{})
	require.NoError(t, err)
	_, err = js.Publish(t.Context(), stream.Subject(long, dots), []byte("{}"))
	require.NoError(t, err)
	require.True(t, js.Conn().IsConnected())
}

func TestEntitlementSubjectOutsideTheStream(t *testing.T) {
	t.Parallel()
	s := stream.EntitlementSubject("live_acct_1", "u.4 2*>")
	require.Equal(t, "tollgate.entitlements.live_acct_1.u_4_2__", s)
	require.False(t, strings.HasPrefix(s, stream.SubjectPrefix+"."))
}

// The processor purges the stream up to its consumer's ack floor after each batch: what is
// acknowledged leaves the stream, what is not stays, and the dedupe window still holds the
// purged events' ids.
func TestPurgeToAckFloorKeepsUnappliedAndDedupe(t *testing.T) {
	t.Parallel()
	js := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	s, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(t, err)
	require.Equal(t, jetstream.LimitsPolicy, s.CachedInfo().Config.Retention)
	require.Equal(t, jetstream.DiscardNew, s.CachedInfo().Config.Discard)
	require.Zero(t, s.CachedInfo().Config.MaxAge, "an unapplied event is never dropped for its age")

	subj := stream.Subject("cus_1", "invoice.paid")
	for i := range 4 {
		_, err := js.Publish(ctx, subj, []byte("{}"), jetstream.WithMsgID(fmt.Sprint("evt_", i)))
		require.NoError(t, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, stream.Name, jetstream.ConsumerConfig{Durable: "p", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := cons.Fetch(4)
	require.NoError(t, err)
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	require.Len(t, msgs, 4)
	// evt_0, evt_1 and evt_3 applied; evt_2 waits for a delayed redelivery.
	for _, i := range []int{0, 1, 3} {
		require.NoError(t, msgs[i].DoubleAck(ctx))
	}
	require.NoError(t, msgs[2].NakWithDelay(time.Minute))

	floor, err := stream.PurgeApplied(ctx, js, cons, 0)
	require.NoError(t, err)
	require.EqualValues(t, 2, floor)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, info.State.Msgs, "the unapplied evt_2 and evt_3 above it stay")
	require.EqualValues(t, 3, info.State.FirstSeq)

	for _, id := range []string{"evt_0", "evt_2"} { // purged and stored alike
		ack, err := js.Publish(ctx, subj, []byte("{}"), jetstream.WithMsgID(id))
		require.NoError(t, err)
		require.True(t, ack.Duplicate, "%s within the window is a duplicate", id)
	}
	ci, err := cons.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, ci.AckFloor.Stream, "the purge did not move the consumer")
	require.Equal(t, 1, ci.NumAckPending)
}

// A stream of the earlier landed release (limits retention, MaxAge 30 days, 10 GiB) is updated
// in place by a listener or processor starting: MaxAge 0, every message kept, the operator's
// size limit kept.
func TestEnsureUpdatesAnEarlierReleaseStreamInPlace(t *testing.T) {
	t.Parallel()
	js := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	earlier := stream.Config(stream.Options{MaxBytes: 2 << 30})
	earlier.MaxAge = 30 * 24 * time.Hour
	earlier.Description = "Stripe webhook events accepted by the Tollgate listener, raw bytes, Nats-Msg-Id = event id"
	_, err := js.CreateStream(ctx, earlier)
	require.NoError(t, err)
	for i := range 5 {
		_, err := js.Publish(ctx, stream.Subject("cus_1", "invoice.paid"), []byte("{}"), jetstream.WithMsgID(fmt.Sprint("evt_", i)))
		require.NoError(t, err)
	}

	s, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	want := stream.Config(stream.Options{MaxBytes: 2 << 30})
	require.Zero(t, info.Config.MaxAge)
	require.Equal(t, jetstream.LimitsPolicy, info.Config.Retention)
	require.Equal(t, want.MaxBytes, info.Config.MaxBytes, "the operator's size limit kept")
	require.Equal(t, want.Description, info.Config.Description)
	require.EqualValues(t, 5, info.State.Msgs)
	ack, err := js.Publish(ctx, stream.Subject("cus_1", "invoice.paid"), []byte("{}"), jetstream.WithMsgID("evt_4"))
	require.NoError(t, err)
	require.True(t, ack.Duplicate, "the dedupe window survives the update")
}

// A work-queue stream, which only a development build created, cannot be updated to limits
// retention (nats-server refuses): Ensure leaves it untouched and says how to replace it.
func TestEnsureRefusesAWorkQueueStream(t *testing.T) {
	t.Parallel()
	js := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	wq := stream.Config(stream.Options{})
	wq.Retention = jetstream.WorkQueuePolicy
	_, err := js.CreateStream(ctx, wq)
	require.NoError(t, err)
	_, err = js.Publish(ctx, stream.Subject("cus_1", "invoice.paid"), []byte("{}"), jetstream.WithMsgID("evt_1"))
	require.NoError(t, err)

	_, err = stream.Ensure(ctx, js, stream.Options{Replicas: 1, MaxBytes: 1 << 30})
	require.ErrorIs(t, err, stream.ErrWorkQueue)
	require.ErrorContains(t, err, "nats stream rm STRIPE_EVENTS")
	s, err := js.Stream(ctx, stream.Name)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, jetstream.WorkQueuePolicy, info.Config.Retention, "left as it is")
	require.Equal(t, wq.MaxBytes, info.Config.MaxBytes, "left as it is")
	require.EqualValues(t, 1, info.State.Msgs)

	// Why: the server refuses the change of retention.
	_, err = js.UpdateStream(ctx, stream.Config(stream.Options{}))
	require.Error(t, err)

	// The fix the error names: drained, deleted, recreated by the next start.
	require.NoError(t, js.DeleteStream(ctx, stream.Name))
	s, err = stream.Ensure(ctx, js, stream.Options{})
	require.NoError(t, err)
	require.Equal(t, jetstream.LimitsPolicy, s.CachedInfo().Config.Retention)
}
