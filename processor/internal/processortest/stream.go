package processortest

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"github.com/tollgate/tollgate/pkg/stream"
)

// Webhook stores raw in the stream as the listener does when Stripe's webhook arrives.
func (b *Bundle) Webhook(t *testing.T, raw []byte) {
	t.Helper()
	b.Publish(t, raw)
}

// Stream is the test's JetStream stream.
func (b *Bundle) Stream(t *testing.T) jetstream.Stream {
	t.Helper()
	st, err := b.JS.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	return st
}

// MsgCount is the number of messages in the stream.
func (b *Bundle) MsgCount(t *testing.T) uint64 {
	t.Helper()
	info, err := b.Stream(t).Info(t.Context())
	require.NoError(t, err)
	// A processor purges applied events from the stream, so count what was ever stored (each
	// test has a stream of its own, numbered from 1).
	return info.State.LastSeq
}

// StreamIDs returns the Nats-Msg-Id of every message in the stream, in stream order.
func (b *Bundle) StreamIDs(t *testing.T) []string {
	t.Helper()
	st := b.Stream(t)
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := st.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		ids = append(ids, msg.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}
