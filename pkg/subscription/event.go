package subscription

import (
	"errors"
	"fmt"
	"github.com/tollgate/tollgate/pkg/internal/jsonscan"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// ErrUndecodable is wrapped by every error Decode returns: the event is of a type the derivation
// understands, but its data.object lacks what that type must carry (a subscription without id or
// status, a field of the wrong JSON type, ...). Unknown and uninteresting event types are never an
// error.
var ErrUndecodable = errors.New("undecodable Stripe object")

// Event is one Stripe event reduced to the facts the derivation reads. At most one of Subscription,
// Customer, Checkout and EntitlementSummary is set; when none is, the event is one Derive only
// counts (it can still be the history's last event). Build Events with Decode: it also records,
// unexported, what the object looked like before the event (data.previous_attributes), which Order
// needs to break ties between events of the same second. Derive never modifies an Event or the
// objects it points to, and neither may its callers.
type Event struct {
	ID         string
	Type       string
	Created    int64  // Unix seconds, as Stripe stamps it
	CustomerID string // the customer the event belongs to, as stripeevent.Parse found it

	// Subscription is data.object of customer.subscription.{created,updated,deleted,paused,resumed,
	// pending_update_applied,pending_update_expired,trial_will_end}.
	Subscription *SubscriptionObject
	// Customer is data.object of customer.{created,updated,deleted}.
	Customer *CustomerObject
	// Checkout is data.object of checkout.session.completed and
	// checkout.session.async_payment_succeeded in subscription mode.
	Checkout *CheckoutSession
	// EntitlementSummary is data.object of entitlements.active_entitlement_summary.updated.
	EntitlementSummary *EntitlementSummary

	prior *prior
}

// SubscriptionObject holds the facts of a Stripe subscription object. Timestamps are Unix seconds,
// 0 when absent (null).
type SubscriptionObject struct {
	ID         string
	CustomerID string
	Status     string
	// PriceIDs and ProductIDs are the items' prices and products (items.data[].price and, on old
	// API versions, items.data[].plan), sorted and deduplicated.
	PriceIDs   []string
	ProductIDs []string
	// CurrentPeriodEnd is the subscription's current_period_end (API versions before
	// 2025-03-31.basil) or, when the subscription has none, the latest of its items' (basil and later).
	CurrentPeriodEnd  int64
	TrialEnd          int64
	EndedAt           int64
	CancelAtPeriodEnd bool
	// Paused is true when pause_collection is set; PauseBehavior and PauseResumesAt are its
	// behavior and resumes_at.
	Paused         bool
	PauseBehavior  string
	PauseResumesAt int64

	// Fields read only to recognise the same object state in two events (see sameSubscription).
	periodEnd      int64 // the subscription's own current_period_end
	periodStart    int64
	itemsPeriodEnd int64 // the latest items.data[].current_period_end
	cancelAt       int64
	canceledAt     int64
	latestInvoice  string
}

// CustomerObject holds the facts of a Stripe customer object.
type CustomerObject struct {
	ID       string
	Metadata map[string]string // nil when empty
}

// CheckoutSession holds the facts of a completed Checkout Session in subscription mode.
type CheckoutSession struct {
	ID                string
	ClientReferenceID string // "" when null
	SubscriptionID    string // the subscription the session created; noted only, status comes from subscription events
}

// EntitlementSummary holds the facts of an entitlements.active_entitlement_summary object.
type EntitlementSummary struct {
	LookupKeys []string // entitlements.data[].lookup_key, sorted and deduplicated; nil when none
}

// prior is the object as it was just before the event: data.object with data.previous_attributes
// applied, for the fields sameSubscription, sameCustomer and sameSummary compare. For an event
// without previous_attributes it is the object itself (the event is taken to have changed none of
// those fields). It is nil for *.created and *.deleted events and for types without such an object.
type prior struct {
	subscription *SubscriptionObject
	customer     *CustomerObject
	summary      *EntitlementSummary
}

// Decode reads the facts the derivation needs from a parsed Stripe event; it is pure and keeps no
// reference to ev.Raw or ev.Object. Events of types the derivation ignores (invoice.*, payment
// intents, checkout sessions not in subscription mode, ...) decode to an Event with only ID, Type,
// Created and CustomerID set, never to an error. Only an event of an understood type whose object
// is malformed gives an error, which wraps ErrUndecodable. ev is expected to come from
// stripeevent.Parse, which has checked that the payload is valid JSON.
func Decode(ev stripeevent.Event) (Event, error) {
	out := Event{ID: ev.ID, Type: ev.Type, Created: ev.Created, CustomerID: ev.CustomerID}
	var err error
	switch objectKinds[ev.Type] {
	case kindCustomer:
		err = out.decodeCustomer(ev)
	case kindSubscription:
		err = out.decodeSubscription(ev)
	case kindCheckout:
		err = out.decodeCheckout(ev)
	case kindSummary:
		err = out.decodeSummary(ev)
	}
	if err != nil {
		return Event{}, fmt.Errorf("%w: event %s (%s): %w", ErrUndecodable, ev.ID, ev.Type, err)
	}
	return out, nil
}

type objectKind uint8

const (
	kindNone objectKind = iota
	kindCustomer
	kindSubscription
	kindCheckout
	kindSummary
)

// objectKinds are the event types whose data.object Decode reads.
var objectKinds = map[string]objectKind{ //nolint:gochecknoglobals // constant table
	"customer.created": kindCustomer, "customer.updated": kindCustomer, "customer.deleted": kindCustomer,
	"customer.subscription.created": kindSubscription, "customer.subscription.updated": kindSubscription,
	"customer.subscription.deleted": kindSubscription, "customer.subscription.paused": kindSubscription,
	"customer.subscription.resumed": kindSubscription, "customer.subscription.pending_update_applied": kindSubscription,
	"customer.subscription.pending_update_expired": kindSubscription, "customer.subscription.trial_will_end": kindSubscription,
	"checkout.session.completed": kindCheckout, "checkout.session.async_payment_succeeded": kindCheckout,
	"entitlements.active_entitlement_summary.updated": kindSummary,
}

// ReadsObject reports whether Decode reads the data.object of events of this type. For any other
// type the decoded Event is its envelope alone (ID, Type, Created, CustomerID), so a caller that
// has those fields can skip loading and parsing the payload.
func ReadsObject(eventType string) bool { return objectKinds[eventType] != kindNone }

// hasPrior reports whether events of this type change an existing object (neither create nor
// delete it), so that the object's earlier state is worth recording.
func hasPrior(typ string) bool { return rank(typ) == rankOther }

func (e *Event) decodeSubscription(ev stripeevent.Event) error {
	s := &SubscriptionObject{}
	if err := readSubscription(ev.Object, s, false); err != nil {
		return err
	}
	if s.ID == "" {
		return errors.New("subscription has no id")
	}
	if s.Status == "" {
		return fmt.Errorf("subscription %s has no status", s.ID)
	}
	if s.CustomerID == "" {
		s.CustomerID = ev.CustomerID
	}
	s.CurrentPeriodEnd = s.periodEnd
	if s.CurrentPeriodEnd == 0 {
		s.CurrentPeriodEnd = s.itemsPeriodEnd
	}
	e.Subscription = s
	if !hasPrior(e.Type) {
		return nil
	}
	before := s
	if ev.PreviousAttributes != nil {
		b := *s
		if err := readSubscription(ev.PreviousAttributes, &b, true); err != nil {
			return fmt.Errorf("previous_attributes: %w", err)
		}
		b.ID, b.CustomerID = s.ID, s.CustomerID
		before = &b
	}
	e.prior = &prior{subscription: before}
	return nil
}

// readSubscription sets in s the fields present in the subscription JSON object d. It serves both
// the full object and, with partial set, previous_attributes (a partial object: only the fields
// that changed, nested objects such as pause_collection only with their changed jsonscan.Members, arrays
// whole).
func readSubscription(d []byte, s *SubscriptionObject, partial bool) error {
	return jsonscan.EachMember(d, func(key []byte, i int) (end int, err error) {
		switch string(key) {
		case "id":
			s.ID, end, err = jsonscan.ReadString(d, i)
		case "customer":
			s.CustomerID, end, err = jsonscan.ReadRef(d, i)
		case "status":
			s.Status, end, err = jsonscan.ReadString(d, i)
		case "cancel_at_period_end":
			s.CancelAtPeriodEnd, end, err = jsonscan.ReadBool(d, i)
		case "current_period_end":
			s.periodEnd, end, err = jsonscan.ReadInt(d, i)
		case "current_period_start":
			s.periodStart, end, err = jsonscan.ReadInt(d, i)
		case "trial_end":
			s.TrialEnd, end, err = jsonscan.ReadInt(d, i)
		case "ended_at":
			s.EndedAt, end, err = jsonscan.ReadInt(d, i)
		case "cancel_at":
			s.cancelAt, end, err = jsonscan.ReadInt(d, i)
		case "canceled_at":
			s.canceledAt, end, err = jsonscan.ReadInt(d, i)
		case "latest_invoice":
			s.latestInvoice, end, err = jsonscan.ReadRef(d, i)
		case "pause_collection":
			end, err = readPause(d, i, s, partial)
		case "items":
			end, err = readItems(d, i, s)
		default:
			return jsonscan.SkipValue(d, i)
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return end, nil
	})
}

// readPause reads pause_collection: null, or an object that replaces the current one (or, when
// partial, updates its jsonscan.Members).
func readPause(d []byte, i int, s *SubscriptionObject, partial bool) (int, error) {
	if jsonscan.NullAt(d, i) || !partial {
		s.Paused, s.PauseBehavior, s.PauseResumesAt = false, "", 0
	}
	if jsonscan.NullAt(d, i) {
		return i + 4, nil
	}
	s.Paused = true
	return jsonscan.Members(d, i, func(key []byte, i int) (end int, err error) {
		switch string(key) {
		case "behavior":
			s.PauseBehavior, end, err = jsonscan.ReadString(d, i)
		case "resumes_at":
			s.PauseResumesAt, end, err = jsonscan.ReadInt(d, i)
		default:
			return jsonscan.SkipValue(d, i)
		}
		return end, err
	})
}

// readItems reads a subscription's items list (a list object, or {"data": [...]} in
// previous_attributes); the items replace whatever s had.
func readItems(d []byte, i int, s *SubscriptionObject) (int, error) {
	s.PriceIDs, s.ProductIDs, s.itemsPeriodEnd = nil, nil, 0
	end, err := jsonscan.Members(d, i, func(key []byte, i int) (int, error) {
		if string(key) != "data" {
			return jsonscan.SkipValue(d, i)
		}
		return jsonscan.Elements(d, i, func(i int) (int, error) { return readItem(d, i, s) })
	})
	if err != nil {
		return 0, err
	}
	s.PriceIDs = sortedSet(s.PriceIDs)
	s.ProductIDs = sortedSet(s.ProductIDs)
	return end, nil
}

func readItem(d []byte, i int, s *SubscriptionObject) (int, error) {
	return jsonscan.Members(d, i, func(key []byte, i int) (end int, err error) {
		switch string(key) {
		case "price", "plan":
			end, err = readPrice(d, i, s)
		case "current_period_end":
			var periodEnd int64
			periodEnd, end, err = jsonscan.ReadInt(d, i)
			s.itemsPeriodEnd = max(s.itemsPeriodEnd, periodEnd)
		default:
			return jsonscan.SkipValue(d, i)
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return end, nil
	})
}

// readPrice reads a price or a legacy plan, expanded (the norm in subscription items) or as an id.
func readPrice(d []byte, i int, s *SubscriptionObject) (int, error) {
	if i >= len(d) || d[i] != '{' {
		id, end, err := jsonscan.ReadRef(d, i)
		if id != "" {
			s.PriceIDs = append(s.PriceIDs, id)
		}
		return end, err
	}
	return jsonscan.Members(d, i, func(key []byte, i int) (end int, err error) {
		var id string
		switch string(key) {
		case "id":
			if id, end, err = jsonscan.ReadString(d, i); id != "" {
				s.PriceIDs = append(s.PriceIDs, id)
			}
		case "product":
			if id, end, err = jsonscan.ReadRef(d, i); id != "" {
				s.ProductIDs = append(s.ProductIDs, id)
			}
		default:
			return jsonscan.SkipValue(d, i)
		}
		return end, err
	})
}

func (e *Event) decodeCustomer(ev stripeevent.Event) error {
	c := &CustomerObject{}
	d := ev.Object
	err := jsonscan.EachMember(d, func(key []byte, i int) (end int, err error) {
		switch string(key) {
		case "id":
			c.ID, end, err = jsonscan.ReadString(d, i)
		case "metadata":
			c.Metadata, end, err = readMetadata(d, i, nil)
		default:
			return jsonscan.SkipValue(d, i)
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return end, nil
	})
	if err != nil {
		return err
	}
	if c.ID == "" {
		return errors.New("customer has no id")
	}
	e.Customer = c
	if !hasPrior(e.Type) {
		return nil
	}
	before := c
	if p := ev.PreviousAttributes; p != nil {
		b := &CustomerObject{ID: c.ID, Metadata: c.Metadata}
		err := jsonscan.EachMember(p, func(key []byte, i int) (int, error) {
			if string(key) != "metadata" {
				return jsonscan.SkipValue(p, i)
			}
			md, end, err := readMetadata(p, i, c.Metadata)
			if err != nil {
				return 0, fmt.Errorf("previous_attributes: metadata: %w", err)
			}
			b.Metadata = md
			return end, nil
		})
		if err != nil {
			return err
		}
		before = b
	}
	e.prior = &prior{customer: before}
	return nil
}

// readMetadata reads a metadata object over a copy of base: a string value sets its key, null
// removes it (previous_attributes marks a key that did not exist before with null).
func readMetadata(d []byte, i int, base map[string]string) (map[string]string, int, error) {
	if jsonscan.NullAt(d, i) {
		return nil, i + 4, nil
	}
	var md map[string]string
	if len(base) > 0 {
		md = make(map[string]string, len(base))
		for k, v := range base {
			md[k] = v
		}
	}
	end, err := jsonscan.Members(d, i, func(key []byte, i int) (int, error) {
		if jsonscan.NullAt(d, i) {
			delete(md, string(key))
			return i + 4, nil
		}
		v, end, err := jsonscan.ReadString(d, i)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		if md == nil {
			md = make(map[string]string)
		}
		md[string(key)] = v
		return end, nil
	})
	if len(md) == 0 {
		md = nil
	}
	return md, end, err
}

func (e *Event) decodeCheckout(ev stripeevent.Event) error {
	var c CheckoutSession
	var mode string
	d := ev.Object
	err := jsonscan.EachMember(d, func(key []byte, i int) (end int, err error) {
		switch string(key) {
		case "id":
			c.ID, end, err = jsonscan.ReadString(d, i)
		case "mode":
			mode, end, err = jsonscan.ReadString(d, i)
		case "client_reference_id":
			c.ClientReferenceID, end, err = jsonscan.ReadString(d, i)
		case "subscription":
			c.SubscriptionID, end, err = jsonscan.ReadRef(d, i)
		default:
			return jsonscan.SkipValue(d, i)
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return end, nil
	})
	if err != nil {
		return err
	}
	if mode != "subscription" {
		return nil // a one-off payment or a setup session says nothing about subscriptions
	}
	if c.ID == "" {
		return errors.New("checkout session has no id")
	}
	e.Checkout = &c
	return nil
}

func (e *Event) decodeSummary(ev stripeevent.Event) error {
	s := &EntitlementSummary{}
	seen := false
	d := ev.Object
	err := jsonscan.EachMember(d, func(key []byte, i int) (int, error) {
		if string(key) != "entitlements" {
			return jsonscan.SkipValue(d, i)
		}
		seen = true
		keys, end, err := readLookupKeys(d, i)
		if err != nil {
			return 0, fmt.Errorf("entitlements: %w", err)
		}
		s.LookupKeys = keys
		return end, nil
	})
	if err != nil {
		return err
	}
	if !seen {
		return errors.New("entitlement summary has no entitlements")
	}
	e.EntitlementSummary = s
	before := s
	if p := ev.PreviousAttributes; p != nil {
		b := *s
		err := jsonscan.EachMember(p, func(key []byte, i int) (int, error) {
			if string(key) != "entitlements" {
				return jsonscan.SkipValue(p, i)
			}
			keys, end, err := readLookupKeys(p, i)
			if err != nil {
				return 0, fmt.Errorf("previous_attributes: entitlements: %w", err)
			}
			b.LookupKeys = keys
			return end, nil
		})
		if err != nil {
			return err
		}
		before = &b
	}
	e.prior = &prior{summary: before}
	return nil
}

// readLookupKeys reads the lookup keys of an entitlements list ({"data": [{"lookup_key": ...}]}).
func readLookupKeys(d []byte, i int) ([]string, int, error) {
	var keys []string
	end, err := jsonscan.Members(d, i, func(key []byte, i int) (int, error) {
		if string(key) != "data" {
			return jsonscan.SkipValue(d, i)
		}
		return jsonscan.Elements(d, i, func(i int) (int, error) {
			return jsonscan.Members(d, i, func(key []byte, i int) (int, error) {
				if string(key) != "lookup_key" {
					return jsonscan.SkipValue(d, i)
				}
				k, end, err := jsonscan.ReadString(d, i)
				if k != "" {
					keys = append(keys, k)
				}
				return end, err
			})
		})
	})
	return sortedSet(keys), end, err
}

// sortedSet sorts and deduplicates s in place; nil when empty.
func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return slices.Compact(s)
}

const (
	rankCreated = iota
	rankOther
	rankDeleted
)

// rank places an event among the events of its object: *.created first, *.deleted last.
func rank(typ string) int {
	switch {
	case strings.HasSuffix(typ, ".created"):
		return rankCreated
	case strings.HasSuffix(typ, ".deleted"):
		return rankDeleted
	}
	return rankOther
}
