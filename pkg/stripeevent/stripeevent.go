// Package stripeevent reads the envelope of a raw Stripe event, whatever its API version
// (2020-03-02 through 2025 and later), and finds the customer it belongs to.
//
// It reads only what every version shares: id, type, created, livemode, api_version, account and
// data.object / data.previous_attributes. It never interprets the object beyond finding its
// customer; that is the derivation's job.
package stripeevent

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tollgate/tollgate/pkg/internal/jsonscan"
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
}

// Parse reads raw as a Stripe event. It needs valid JSON: an object with a string id and type,
// a positive integer created and a data.object that is a JSON object; anything else gives an
// error wrapping ErrInvalid. Raw, Object and PreviousAttributes in the result alias raw.
func Parse(raw []byte) (Event, error) {
	if !json.Valid(raw) {
		return Event{}, fmt.Errorf("%w: not valid JSON", ErrInvalid)
	}
	return ParseValid(raw)
}

// ParseValid is Parse for bytes already known to be valid JSON, such as events read back from
// the event store (Parse accepted them before they were stored). It skips the validation pass,
// the larger part of Parse's cost; on bytes that are not JSON it returns an error, never panics.
func ParseValid(raw []byte) (Event, error) {
	ev, err := scan(raw)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch {
	case ev.ID == "":
		return Event{}, fmt.Errorf("%w: no id", ErrInvalid)
	case ev.Type == "":
		return Event{}, fmt.Errorf("%w: event %s has no type", ErrInvalid, ev.ID)
	case ev.Created <= 0:
		return Event{}, fmt.Errorf("%w: event %s has no valid created", ErrInvalid, ev.ID)
	case ev.Object == nil:
		return Event{}, fmt.Errorf("%w: event %s has no data.object", ErrInvalid, ev.ID)
	}
	return ev, nil
}

// scan reads the envelope's fields in one pass, skipping everything else without decoding it.
func scan(raw []byte) (Event, error) {
	ev := Event{Raw: raw}
	var objectType, objectID, customer string
	err := jsonscan.EachMember(raw, func(key []byte, i int) (int, error) {
		var err error
		var end int
		switch string(key) {
		case "id":
			ev.ID, end, err = jsonscan.ReadString(raw, i)
		case "type":
			ev.Type, end, err = jsonscan.ReadString(raw, i)
		case "created":
			ev.Created, end, err = jsonscan.ReadInt(raw, i)
		case "livemode":
			ev.Livemode, end, err = jsonscan.ReadBool(raw, i)
		case "api_version":
			ev.APIVersion, end, err = jsonscan.ReadString(raw, i)
		case "account":
			ev.Account, end, err = jsonscan.ReadString(raw, i)
		case "data":
			end, err = jsonscan.Members(raw, i, func(key []byte, i int) (int, error) {
				switch string(key) {
				case "object":
					if raw[i] != '{' {
						return 0, errors.New("data.object is not an object")
					}
					obj, end, err := jsonscan.Value(raw, i)
					if err != nil {
						return 0, err
					}
					ev.Object = obj
					objectID, objectType, customer, err = objectHead(obj)
					return end, err
				case "previous_attributes":
					v, end, err := jsonscan.Value(raw, i)
					if err == nil && v[0] == '{' {
						ev.PreviousAttributes = v
					}
					return end, err
				default:
					return jsonscan.SkipValue(raw, i)
				}
			})
		default:
			end, err = jsonscan.SkipValue(raw, i)
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return end, nil
	})
	if err != nil {
		return Event{}, err
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

// objectHead reads the id, the object type and the customer reference of data.object.
func objectHead(obj []byte) (id, typ, customer string, err error) {
	err = jsonscan.EachMember(obj, func(key []byte, i int) (int, error) {
		var err error
		var end int
		switch string(key) {
		case "id":
			id, end, err = jsonscan.ReadString(obj, i)
		case "object":
			typ, end, err = jsonscan.ReadString(obj, i)
		case "customer":
			customer, end, err = jsonscan.ReadRef(obj, i)
		default:
			end, err = jsonscan.SkipValue(obj, i)
		}
		if err != nil {
			return 0, fmt.Errorf("data.object.%s: %w", key, err)
		}
		return end, nil
	})
	return id, typ, customer, err
}

// ID reads a Stripe reference that is either an id string, an expanded object with an "id", or
// null/absent (""). Anything else is an error.
func ID(ref json.RawMessage) (string, error) {
	return jsonscan.Ref(ref)
}
