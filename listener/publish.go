package main

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// eventPublisher is what storing an event needs of JetStream.
type eventPublisher interface {
	Publish(ctx context.Context, subject string, payload []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// publishEvent stores one event's raw bytes in the stream, as the webhook (and the processor's
// backfill) do: subject stream.Subject(customer, type), Nats-Msg-Id the event id, so JetStream drops the
// same event again within stream.DuplicateWindow and answers it with PubAck.Duplicate (the
// processor's event store dedupes it at any age). It returns once JetStream acknowledged the
// write, or with an error wrapping the publish's (nats.ErrMaxPayload, context errors, ...).
func publishEvent(ctx context.Context, js eventPublisher, ev stripeevent.Event) (*jetstream.PubAck, error) {
	ack, err := js.Publish(ctx, stream.Subject(ev.CustomerID, ev.Type), ev.Raw,
		jetstream.WithMsgID(ev.ID),
		jetstream.WithExpectStream(stream.Name))
	if err != nil {
		return nil, fmt.Errorf("publish event %s: %w", ev.ID, err)
	}
	return ack, nil
}
