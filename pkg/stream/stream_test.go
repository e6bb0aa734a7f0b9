package stream_test

import (
	"context"
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
