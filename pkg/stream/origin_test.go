package stream_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/natstest"
)

func ownEvent(t *testing.T, id, typ string) stripeevent.Event {
	t.Helper()
	raw := fmt.Sprintf(`{"id":%q,"object":"event","type":%q,"created":%d,"livemode":true,"data":{"object":{"id":"sub_1","object":"subscription","customer":"cus_o","status":"active"}}}`,
		id, typ, time.Now().Unix())
	ev, err := stripeevent.Parse([]byte(raw))
	require.NoError(t, err)
	return ev
}

// A snapshot event published by PublishOwn passes CheckOrigin as JetStream delivers it; one
// published any other way (Publish, a raw publish with or without the header, another subject)
// does not; Stripe's events pass whatever their headers.
func TestCheckOrigin(t *testing.T) {
	t.Parallel()
	js := natstest.Start(t).JetStream(t)
	_, err := stream.Ensure(t.Context(), js, stream.Options{})
	require.NoError(t, err)
	snap := ownEvent(t, stripeevent.SnapshotIDPrefix+"1", stripeevent.SnapshotType("subscription"))
	forgedID := ownEvent(t, stripeevent.SnapshotIDPrefix+"2", "customer.subscription.updated")
	stripe := ownEvent(t, "evt_1", "customer.subscription.updated")

	_, err = stream.PublishOwn(t.Context(), js, stripe)
	require.Error(t, err, "PublishOwn is for own events only")

	publishRaw := func(subject string, ev stripeevent.Event, origin string) {
		msg := nats.NewMsg(subject)
		msg.Data = ev.Raw
		if origin != "" {
			msg.Header.Set(stream.OriginHeader, origin)
		}
		_, err := js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(ev.ID+subject+origin))
		require.NoError(t, err)
	}
	_, err = stream.PublishOwn(t.Context(), js, snap)
	require.NoError(t, err)
	_, err = stream.Publish(t.Context(), js, snap) // duplicate id: dropped by JetStream
	require.NoError(t, err)
	publishRaw(stream.Subject("cus_o", snap.Type), snap, "") // no header
	publishRaw(stream.Subject("cus_o", "invoice.paid"), snap, stream.OriginRepair)
	publishRaw(stream.Subject("cus_o", forgedID.Type), forgedID, stream.OriginRepair)
	publishRaw(stream.Subject("cus_o", stripe.Type), stripe, "anything")

	cons, err := js.CreateOrUpdateConsumer(t.Context(), stream.Name, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy})
	require.NoError(t, err)
	batch, err := cons.FetchNoWait(10)
	require.NoError(t, err)
	var verdicts []string
	for msg := range batch.Messages() {
		ev, err := stripeevent.Parse(msg.Data())
		require.NoError(t, err)
		verdict := "ok"
		if err := stream.CheckOrigin(msg.Subject(), msg.Headers(), ev); err != nil {
			require.ErrorIs(t, err, stream.ErrNotOwnOrigin)
			verdict = "refused"
		}
		verdicts = append(verdicts, ev.ID+" "+verdict)
	}
	require.Equal(t, []string{
		"tgsnap_1 ok",      // PublishOwn
		"tgsnap_1 refused", // its subject, no header
		"tgsnap_1 refused", // the header, another subject
		"tgsnap_2 refused", // a snapshot id with a Stripe type
		"evt_1 ok",         // Stripe's event
	}, verdicts)
}
