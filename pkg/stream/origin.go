package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// Tollgate's own events (snapshot events: id stripeevent.SnapshotIDPrefix, type
// stripeevent.ReservedTypePrefix…) are made only by the processor's repair path. Three checks keep
// them that way, each enough on its own against the attacks it covers:
//
//   - the listener refuses them from a webhook (stripeevent.ValidateFromStripe);
//   - their subjects, stripe.events.<customer>.tollgate.…, are denied to the listener's NATS user
//     (docker-compose.yml), so a stolen listener credential cannot publish one;
//   - PublishOwn marks them with OriginHeader, and CheckOrigin, which the processor runs on every
//     message before applying it, refuses one that lacks the mark or came on another subject.
const (
	// OriginHeader names the path an own event was published by.
	OriginHeader = "Tollgate-Origin"
	// OriginRepair is OriginHeader's value for the repair path (repairs and reconcile --repair).
	OriginRepair = "repair"
	// ownTypeToken is the first type token of an own event's subject.
	ownTypeToken = "tollgate"
)

// ErrNotOwnOrigin is wrapped by CheckOrigin's error: an event that claims to be Tollgate's own
// did not come from the repair path.
var ErrNotOwnOrigin = errors.New("a snapshot event that did not come from the repair path")

// MsgPublisher is what PublishOwn needs of JetStream (a jetstream.JetStream has it).
type MsgPublisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// PublishOwn stores one of Tollgate's own events as Publish stores a Stripe event, marked with
// OriginHeader: OriginRepair. It refuses an event that is not an own one (stripeevent.IsOwn):
// Stripe's events go through Publish.
func PublishOwn(ctx context.Context, js MsgPublisher, ev stripeevent.Event) (*jetstream.PubAck, error) {
	if !stripeevent.IsOwn(ev) {
		return nil, fmt.Errorf("publish event %s: not one of Tollgate's own events (use Publish)", ev.ID)
	}
	msg := nats.NewMsg(Subject(ev.CustomerID, ev.Type))
	msg.Data = ev.Raw
	msg.Header.Set(OriginHeader, OriginRepair)
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(Name))
	if err != nil {
		return nil, fmt.Errorf("publish event %s: %w", ev.ID, err)
	}
	return ack, nil
}

// CheckOrigin is nil for a Stripe event (whatever its subject and headers) and for an own event
// that PublishOwn published: on an own subject (stripe.events.<customer>.tollgate.…) with
// OriginHeader OriginRepair. Otherwise, for an own event that came any other way (a forged
// webhook that got past the listener, a raw publish), it returns an error wrapping
// ErrNotOwnOrigin that says what is missing. The processor must not apply such an event.
func CheckOrigin(subject string, header nats.Header, ev stripeevent.Event) error {
	if !stripeevent.IsOwn(ev) {
		return nil
	}
	if !ownSubject(subject) {
		return fmt.Errorf("event %s: %w: subject %q is not one only the processor may publish to", ev.ID, ErrNotOwnOrigin, subject)
	}
	if got := header.Get(OriginHeader); got != OriginRepair {
		return fmt.Errorf("event %s: %w: header %s is %q, want %q", ev.ID, ErrNotOwnOrigin, OriginHeader, got, OriginRepair)
	}
	return nil
}

// ownSubject reports whether subject is stripe.events.<customer>.tollgate.…
func ownSubject(subject string) bool {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return false
	}
	_, typ, ok := strings.Cut(rest, ".")
	return ok && strings.HasPrefix(typ, ownTypeToken+".")
}
