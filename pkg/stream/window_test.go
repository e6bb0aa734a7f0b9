package stream_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
)

// The duplicate window of an earlier release (72 hours, a few GB of the server's memory at a
// sustained 100 events/s) is shrunk in place to DuplicateWindow, and the ids the server holds
// still dedupe after the update.
func TestEnsureShrinksAnEarlierDuplicateWindow(t *testing.T) {
	t.Parallel()
	js := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	earlier := stream.Config(stream.Options{})
	earlier.Duplicates = 72 * time.Hour
	_, err := js.CreateStream(ctx, earlier)
	require.NoError(t, err)
	_, err = js.Publish(ctx, stream.Subject("cus_1", "invoice.paid"), []byte("{}"), jetstream.WithMsgID("evt_1"))
	require.NoError(t, err)

	s, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, stream.DuplicateWindow, info.Config.Duplicates)
	require.LessOrEqual(t, info.Config.Duplicates, time.Hour, "the window is sized by its memory, not by Stripe's retry period")
	ack, err := js.Publish(ctx, stream.Subject("cus_1", "invoice.paid"), []byte("{}"), jetstream.WithMsgID("evt_1"))
	require.NoError(t, err)
	require.True(t, ack.Duplicate, "an id of the window still dedupes after the update")
}
