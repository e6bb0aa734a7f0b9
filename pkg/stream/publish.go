package stream

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// Publisher is what storing an event needs of JetStream (a jetstream.JetStream has it).
type Publisher interface {
	Publish(ctx context.Context, subject string, payload []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Publish stores one event's raw bytes in the stream, the one way the listener's webhook, the
// processor's backfill and its repairs do it: subject Subject(customer, type), Nats-Msg-Id the
// event id, so JetStream drops the same event again within DuplicateWindow and answers it with
// PubAck.Duplicate (the processor's event store dedupes it at any age). It returns once
// JetStream acknowledged the write, or with an error wrapping the publish's (nats.ErrMaxPayload,
// context errors, ...).
func Publish(ctx context.Context, js Publisher, ev stripeevent.Event) (*jetstream.PubAck, error) {
	ack, err := js.Publish(ctx, Subject(ev.CustomerID, ev.Type), ev.Raw,
		jetstream.WithMsgID(ev.ID),
		jetstream.WithExpectStream(Name))
	if err != nil {
		return nil, fmt.Errorf("publish event %s: %w", ev.ID, err)
	}
	return ack, nil
}
