package stream_test

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/testkit/natstest"
)

// An applied (acked) event leaves the stream: it is a work queue, and the dedupe window still
// holds its id.
func TestStreamKeepsOnlyUnappliedEvents(t *testing.T) {
	t.Parallel()
	js := natstest.Start(t).JetStream(t)
	s, err := stream.Ensure(t.Context(), js, stream.Options{})
	require.NoError(t, err)
	require.Equal(t, jetstream.WorkQueuePolicy, s.CachedInfo().Config.Retention)
	require.Zero(t, s.CachedInfo().Config.MaxAge)

	subj := stream.Subject("cus_1", "invoice.paid")
	_, err = js.Publish(t.Context(), subj, []byte("{}"), jetstream.WithMsgID("evt_1"))
	require.NoError(t, err)
	cons, err := js.CreateOrUpdateConsumer(t.Context(), stream.Name, jetstream.ConsumerConfig{Durable: "p", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	batch, err := cons.Fetch(1)
	require.NoError(t, err)
	for m := range batch.Messages() {
		require.NoError(t, m.DoubleAck(t.Context()))
	}
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs, "the applied event left the stream")

	ack, err := js.Publish(t.Context(), subj, []byte("{}"), jetstream.WithMsgID("evt_1"))
	require.NoError(t, err)
	require.True(t, ack.Duplicate, "dedupe does not need the message")
}

// A stream of an earlier release (limits retention) is left to the listener as it is by Ensure,
// and converted by MigrateToWorkQueue once the consumer applied it: nothing is lost, publishes
// meanwhile are refused (Stripe retries them) and accepted again after.
func TestMigrateLegacyStream(t *testing.T) {
	t.Parallel()
	js := natstest.Start(t).JetStream(t)
	legacy := stream.Config(stream.Options{})
	legacy.Retention, legacy.MaxAge = jetstream.LimitsPolicy, 30*24*time.Hour
	_, err := js.CreateStream(t.Context(), legacy)
	require.NoError(t, err)
	for i := range 5 {
		_, err := js.Publish(t.Context(), stream.Subject("cus_1", "invoice.paid"), []byte("{}"), jetstream.WithMsgID(fmt.Sprint("evt_", i)))
		require.NoError(t, err)
	}
	s, err := stream.Ensure(t.Context(), js, stream.Options{})
	require.NoError(t, err, "the listener starts on a legacy stream")
	require.True(t, stream.Legacy(s.CachedInfo().Config))

	cons, err := js.CreateOrUpdateConsumer(t.Context(), stream.Name, jetstream.ConsumerConfig{Durable: "p", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	migrated := make(chan error, 1)
	go func() {
		migrated <- stream.MigrateToWorkQueue(t.Context(), js, stream.Options{}, "p", 10*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	published := 5
	require.Eventually(t, func() bool {
		_, err := js.Publish(t.Context(), stream.Subject("cus_2", "invoice.paid"), []byte("{}"), jetstream.WithMsgID(fmt.Sprint("evt_", published)))
		if err == nil {
			published++
		}
		return err != nil
	}, 5*time.Second, 10*time.Millisecond, "closed to new events while migrating")

	applied := 0
	for applied < published {
		batch, err := cons.Fetch(published, jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			require.NoError(t, m.Ack())
			applied++
		}
	}
	select {
	case err := <-migrated:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("migration did not finish after every event was applied")
	}

	info, err := js.Stream(t.Context(), stream.Name)
	require.NoError(t, err)
	require.False(t, stream.Legacy(info.CachedInfo().Config))
	_, err = js.Publish(t.Context(), stream.Subject("cus_2", "invoice.paid"), []byte("{}"), jetstream.WithMsgID("evt_late"))
	require.NoError(t, err, "accepted again after the migration")
}
