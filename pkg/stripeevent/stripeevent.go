// Package stripeevent reads the envelope of a raw Stripe event, whatever its API version
// (2020-03-02 through 2025 and later), and finds the customer it belongs to.
//
// It reads only what every version shares: id, type, created, livemode, api_version, account and
// data.object / data.previous_attributes. It never interprets the object beyond finding its
// customer; that is the derivation's job.
package stripeevent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate/tollgate/pkg/internal/stripejson"
)

// ErrInvalid is wrapped by every error Parse returns: the bytes are not a Stripe event.
var ErrInvalid = errors.New("not a Stripe event")

// Event is the envelope of one Stripe event. Raw keeps the bytes exactly as received.
type Event struct {
	ID         string
	Type       string
	Created    int64 // Unix seconds, as Stripe stamps it
	Livemode   bool
	APIVersion string // "" when the payload has none
	Account    string // Connect account id, "" for the platform's own events
	// CustomerID is the customer the event belongs to, "" when none (catalog events and the like).
	CustomerID string
	// Object is data.object; PreviousAttributes is data.previous_attributes (nil when absent).
	Object             json.RawMessage
	PreviousAttributes json.RawMessage
	Raw                []byte

	// Thin is set for a thin event of an event destination ("object": "v2.core.event"): it
	// carries no data, only the object it concerns (RelatedObject). Created is then its RFC 3339
	// created in Unix seconds, and Account its context.
	Thin          bool
	RelatedObject RelatedObject
	// RelatedContext is the connected account the related object belongs to when the event
	// says so apart from its own context: data.impact.context of a retrieved
	// v2.core.health.event_generation_failure.resolved event. "" otherwise.
	RelatedContext string
}

// Snapshot events are synthetic events Tollgate makes from an object read from the API: id
// SnapshotIDPrefix + a unique suffix, type SnapshotType(object), data.object the object.
const (
	SnapshotIDPrefix   = "tgsnap_"
	snapshotTypePrefix = ReservedTypePrefix + "snapshot."
)

// SnapshotType is the type of a snapshot event of a Stripe object kind ("subscription",
// "customer", "checkout.session", ...): "tollgate.snapshot." + object.
func SnapshotType(object string) string { return snapshotTypePrefix + object }

// IsSnapshot reports whether eventType is the type of a snapshot event.
func IsSnapshot(eventType string) bool { return strings.HasPrefix(eventType, snapshotTypePrefix) }

// ThinObject is the "object" of a thin event's envelope.
const ThinObject = "v2.core.event"

// RelatedObject is a thin event's related_object: the object the event is about. Type is
// Stripe's name of its kind ("subscription", "customer", "checkout.session", ...); all are ""
// when the event names none.
//
// Stripe's v2 spec puts it at the top level of the events that have one (v1.* thin events),
// but v2.core.health.event_generation_failure.resolved has none there: its notification names
// no object at all, and the event retrieved from GET /v2/core/events/{id} names the object it
// failed to create events for in data.impact.related_object. Parse reads that one when the
// top level has none.
type RelatedObject struct {
	ID, Type, URL string
}

// Parse reads raw as a Stripe event. It needs valid JSON: an object with a string id and type,
// a positive integer created and a data.object that is a JSON object; anything else gives an
// error wrapping ErrInvalid. A thin event ("object": "v2.core.event") is the exception: its
// created is an RFC 3339 string (read as Unix seconds, fractions dropped) and it has no data. Raw, Object and PreviousAttributes in the result alias raw. The
// whole of raw is validated in the same pass that reads the envelope.
func Parse(raw []byte) (Event, error) {
	ev, err := read(raw)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	switch {
	case ev.ID == "":
		return Event{}, fmt.Errorf("%w: no id", ErrInvalid)
	case ev.Type == "":
		return Event{}, fmt.Errorf("%w: event %s has no type", ErrInvalid, ev.ID)
	case ev.Created <= 0:
		return Event{}, fmt.Errorf("%w: event %s has no valid created", ErrInvalid, ev.ID)
	case ev.Object == nil && !ev.Thin:
		return Event{}, fmt.Errorf("%w: event %s has no data.object", ErrInvalid, ev.ID)
	}
	return ev, nil
}

// read reads the envelope's fields in one pass, skipping everything else without decoding it.
func read(raw []byte) (Event, error) {
	ev := Event{Raw: raw}
	var objectType, objectID, customer, customerAccount string
	var createdText string
	var createdIsText bool
	var impact RelatedObject // data.impact.related_object of a v2 event (event generation failure)
	var impactContext string
	err := stripejson.Object(raw, func(dec *stripejson.Decoder, key []byte) error {
		var err error
		switch string(key) {
		case "id":
			ev.ID, err = stripejson.String(dec)
		case "type":
			ev.Type, err = stripejson.String(dec)
		case "created":
			// Classic events stamp Unix seconds, thin events an RFC 3339 string; which one is
			// allowed is decided once "object" is known (it may come later).
			if dec.PeekKind() == '"' {
				createdIsText = true
				createdText, err = stripejson.String(dec)
			} else {
				ev.Created, err = stripejson.Int(dec)
			}
		case "object":
			var o string
			o, err = stripejson.String(dec)
			ev.Thin = o == ThinObject
		case "context":
			if stripejson.IsNull(dec) {
				err = dec.SkipValue()
			} else {
				ev.Account, err = stripejson.String(dec)
			}
		case "related_object":
			err = readRelated(dec, &ev.RelatedObject)
		case "livemode":
			ev.Livemode, err = stripejson.Bool(dec)
		case "api_version":
			ev.APIVersion, err = stripejson.String(dec)
		case "account":
			ev.Account, err = stripejson.String(dec)
		case "data":
			err = stripejson.Members(dec, func(key []byte) error {
				switch string(key) {
				case "object":
					if dec.PeekKind() != '{' {
						return errors.New("data.object is not an object")
					}
					obj, err := stripejson.Span(dec, raw, func() error {
						var err error
						objectID, objectType, customer, customerAccount, err = objectHead(dec)
						return err
					})
					ev.Object = obj
					return err
				case "previous_attributes":
					isObject := dec.PeekKind() == '{'
					v, err := stripejson.Span(dec, raw, dec.SkipValue)
					if err == nil && isObject {
						ev.PreviousAttributes = v
					}
					return err
				case "impact":
					if dec.PeekKind() != '{' {
						return dec.SkipValue() // not a v2 event's impact; nothing Tollgate reads
					}
					return readImpact(dec, &impact, &impactContext)
				default:
					return dec.SkipValue()
				}
			})
		default:
			err = dec.SkipValue()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return Event{}, err
	}
	if createdIsText {
		if !ev.Thin {
			return Event{}, errors.New("created: a string, but the event is not a thin event")
		}
		t, err := time.Parse(time.RFC3339Nano, createdText)
		if err != nil {
			return Event{}, fmt.Errorf("created: %w", err)
		}
		ev.Created = t.Unix()
	}
	if ev.Thin {
		// A thin event's data (when a retrieved one carries it) is not a v1 object: it names no
		// customer. Its related object may be the customer itself.
		ev.Object, ev.PreviousAttributes = nil, nil
		if ev.RelatedObject == (RelatedObject{}) {
			ev.RelatedObject, ev.RelatedContext = impact, impactContext
		}
		if ev.RelatedObject.Type == "customer" {
			ev.CustomerID = ev.RelatedObject.ID
		}
		return ev, nil
	}
	// Accounts v2: a customer that is an Account names it in customer_account, and customer
	// may then be null; the account id then stands for the customer.
	if customer == "" {
		customer = customerAccount
	}
	// A customer object is its own customer; every other object that belongs to one
	// (subscription, invoice, checkout.session, payment_intent, charge, entitlement summary,
	// discount, tax id, ...) names it in "customer", as an id or expanded.
	if objectType == "customer" {
		ev.CustomerID = objectID
	} else {
		ev.CustomerID = customer
	}
	return ev, nil
}

// objectHead reads the id, the object type and the customer references (customer and, from
// Accounts v2, customer_account) of data.object.
func objectHead(dec *stripejson.Decoder) (id, typ, customer, customerAccount string, err error) {
	err = stripejson.Members(dec, func(key []byte) error {
		var err error
		switch string(key) {
		case "id":
			id, err = stripejson.String(dec)
		case "object":
			typ, err = stripejson.String(dec)
		case "customer":
			customer, err = stripejson.Ref(dec)
		case "customer_account":
			customerAccount, err = stripejson.Ref(dec)
		default:
			err = dec.SkipValue()
		}
		if err != nil {
			return fmt.Errorf("data.object.%s: %w", key, err)
		}
		return nil
	})
	return id, typ, customer, customerAccount, err
}

// readRelated reads a thin event's related_object ({id, type, url}, or null).
func readRelated(dec *stripejson.Decoder, r *RelatedObject) error {
	if stripejson.IsNull(dec) {
		return dec.SkipValue()
	}
	return stripejson.Members(dec, func(key []byte) (err error) {
		switch string(key) {
		case "id":
			r.ID, err = stripejson.String(dec)
		case "type":
			r.Type, err = stripejson.String(dec)
		case "url":
			r.URL, err = stripejson.String(dec)
		default:
			return dec.SkipValue()
		}
		return err
	})
}

// readImpact reads data.impact of a v2 event: its related_object and its context (the connected
// account the lost event was for; absent or null for the platform's own).
func readImpact(dec *stripejson.Decoder, r *RelatedObject, context *string) error {
	return stripejson.Members(dec, func(key []byte) error {
		switch string(key) {
		case "related_object":
			return readRelated(dec, r)
		case "context":
			if stripejson.IsNull(dec) {
				return dec.SkipValue()
			}
			var err error
			*context, err = stripejson.String(dec)
			return err
		default:
			return dec.SkipValue()
		}
	})
}

// ID reads a Stripe reference that is either an id string, an expanded object with an "id", or
// null/absent (""). Anything else, invalid JSON included, is an error.
func ID(ref json.RawMessage) (string, error) {
	if len(bytes.TrimSpace(ref)) == 0 {
		return "", nil
	}
	var id string
	err := stripejson.Read(ref, func(dec *stripejson.Decoder) error {
		var err error
		id, err = stripejson.Ref(dec)
		return err
	})
	return id, err
}
