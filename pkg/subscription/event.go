package subscription

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tollgate/tollgate/pkg/internal/stripejson"
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
	// Items are the subscription's items with their quantities (the oldest API versions' top-level
	// plan and quantity make one item), sorted by price, product, quantity and trial; the limits
	// of PLANS_FILE are counted per item.
	Items []Item
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
	// The top-level plan of the oldest API versions, whose subscriptions have no items; it is
	// the subscription's price when items never came.
	planPriceIDs   []string
	planProductIDs []string
	planQuantity   int64 // the top-level quantity of the oldest API versions
	itemsSeen      bool
}

// Item is one subscription item. PriceID or ProductID is "" when the event did not carry it (a
// price given as an id only has no product). Quantity is the item's quantity, 0 when null (a
// metered price has none). TrialEnd is the end_date of the item's current_trial (a Trial Offer,
// API 2026-09-30.endive and later), 0 when the item is not in a trial offer; InTrial is true
// while current_trial is set.
type Item struct {
	PriceID   string `json:"price_id,omitempty"`
	ProductID string `json:"product_id,omitempty"`
	Quantity  int64  `json:"quantity,omitempty"`
	InTrial   bool   `json:"in_trial,omitempty"`
	TrialEnd  int64  `json:"trial_end,omitempty"`
}

func compareItems(a, b Item) int {
	return cmp.Or(strings.Compare(a.PriceID, b.PriceID), strings.Compare(a.ProductID, b.ProductID),
		cmp.Compare(a.Quantity, b.Quantity), cmp.Compare(a.TrialEnd, b.TrialEnd), boolCompare(a.InTrial, b.InTrial))
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// CustomerObject holds the facts of a Stripe customer object.
type CustomerObject struct {
	ID       string
	Metadata map[string]string // nil when empty
	// Deleted is the deleted flag of a deleted customer as the API returns it ({"id": ...,
	// "deleted": true}), as a snapshot of a deleted customer carries it.
	Deleted bool
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
	// HasMore is entitlements.has_more: the event carries at most 10 entitlements, and the rest
	// are only in the API (GET /v1/entitlements/active_entitlements). LookupKeys is then incomplete.
	HasMore bool
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
	// Snapshot events (stripeevent.SnapshotType): an object as the API returned it.
	stripeevent.SnapshotType("customer"): kindCustomer, stripeevent.SnapshotType("subscription"): kindSubscription,
	stripeevent.SnapshotType("checkout.session"):                        kindCheckout,
	stripeevent.SnapshotType("entitlements.active_entitlement_summary"): kindSummary,
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
		s.CustomerID = ev.CustomerID // customer_account, on Accounts v2 (see stripeevent.Parse)
	}
	s.usePlan()
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
		b.usePlan()
		before = &b
	}
	e.prior = &prior{subscription: before}
	return nil
}

// readSubscription sets in s the fields present in the subscription JSON object d. It serves both
// the full object and, with partial set, previous_attributes (a partial object: only the fields
// that changed, nested objects such as pause_collection only with their changed members, arrays
// whole).
func readSubscription(d []byte, s *SubscriptionObject, partial bool) error {
	return stripejson.Object(d, func(dec *stripejson.Decoder, key []byte) (err error) {
		switch string(key) {
		case "id":
			s.ID, err = stripejson.String(dec)
		case "customer":
			s.CustomerID, err = stripejson.Ref(dec)
		case "status":
			s.Status, err = stripejson.String(dec)
		case "cancel_at_period_end":
			s.CancelAtPeriodEnd, err = stripejson.Bool(dec)
		case "current_period_end":
			s.periodEnd, err = stripejson.Int(dec)
		case "current_period_start":
			s.periodStart, err = stripejson.Int(dec)
		case "trial_end":
			s.TrialEnd, err = stripejson.Int(dec)
		case "ended_at":
			s.EndedAt, err = stripejson.Int(dec)
		case "cancel_at":
			s.cancelAt, err = stripejson.Int(dec)
		case "canceled_at":
			s.canceledAt, err = stripejson.Int(dec)
		case "latest_invoice":
			s.latestInvoice, err = stripejson.Ref(dec)
		case "pause_collection":
			err = readPause(dec, s, partial)
		case "items":
			s.itemsSeen = true
			err = readItems(dec, s)
		case "plan":
			// Before items existed, a subscription had one plan at the top level.
			var p SubscriptionObject
			if stripejson.IsNull(dec) {
				err = dec.SkipValue()
			} else {
				err = readPrice(dec, &p)
			}
			s.planPriceIDs, s.planProductIDs = p.PriceIDs, p.ProductIDs
		case "quantity":
			s.planQuantity, err = stripejson.Int(dec)
		default:
			return dec.SkipValue()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
}

// usePlan makes the top-level plan the subscription's price (and its one item) when it has no
// items.
func (s *SubscriptionObject) usePlan() {
	if !s.itemsSeen && len(s.PriceIDs) == 0 && len(s.planPriceIDs) > 0 {
		s.PriceIDs = sortedSet(slices.Clone(s.planPriceIDs))
		s.ProductIDs = sortedSet(slices.Clone(s.planProductIDs))
		it := Item{PriceID: s.planPriceIDs[0], Quantity: s.planQuantity}
		if len(s.planProductIDs) > 0 {
			it.ProductID = s.planProductIDs[0]
		}
		s.Items = []Item{it}
	}
}

// readPause reads pause_collection: null, or an object that replaces the current one (or, when
// partial, updates its members).
func readPause(dec *stripejson.Decoder, s *SubscriptionObject, partial bool) error {
	null := stripejson.IsNull(dec)
	if null || !partial {
		s.Paused, s.PauseBehavior, s.PauseResumesAt = false, "", 0
	}
	if null {
		return dec.SkipValue()
	}
	s.Paused = true
	return stripejson.Members(dec, func(key []byte) (err error) {
		switch string(key) {
		case "behavior":
			s.PauseBehavior, err = stripejson.String(dec)
		case "resumes_at":
			s.PauseResumesAt, err = stripejson.Int(dec)
		default:
			return dec.SkipValue()
		}
		return err
	})
}

// readItems reads a subscription's items list (a list object, or {"data": [...]} in
// previous_attributes); the items replace whatever s had.
func readItems(dec *stripejson.Decoder, s *SubscriptionObject) error {
	s.PriceIDs, s.ProductIDs, s.Items, s.itemsPeriodEnd = nil, nil, nil, 0
	err := stripejson.Members(dec, func(key []byte) error {
		if string(key) != "data" {
			return dec.SkipValue()
		}
		return stripejson.Elements(dec, func() error { return readItem(dec, s) })
	})
	if err != nil {
		return err
	}
	s.PriceIDs = sortedSet(s.PriceIDs)
	s.ProductIDs = sortedSet(s.ProductIDs)
	slices.SortFunc(s.Items, compareItems)
	return nil
}

func readItem(dec *stripejson.Decoder, s *SubscriptionObject) error {
	var it Item
	var price SubscriptionObject // the item's price and plan (the same price, as two objects)
	err := stripejson.Members(dec, func(key []byte) (err error) {
		switch string(key) {
		case "price", "plan":
			err = readPrice(dec, &price)
		case "quantity":
			it.Quantity, err = stripejson.Int(dec)
		case "current_trial":
			err = readTrial(dec, &it)
		case "current_period_end":
			var periodEnd int64
			periodEnd, err = stripejson.Int(dec)
			s.itemsPeriodEnd = max(s.itemsPeriodEnd, periodEnd)
		default:
			return dec.SkipValue()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.PriceIDs = append(s.PriceIDs, price.PriceIDs...)
	s.ProductIDs = append(s.ProductIDs, price.ProductIDs...)
	if len(price.PriceIDs) > 0 {
		it.PriceID = price.PriceIDs[0]
	}
	if len(price.ProductIDs) > 0 {
		it.ProductID = price.ProductIDs[0]
	}
	s.Items = append(s.Items, it)
	return nil
}

// readTrial reads an item's current_trial (Trial Offers): null, or {trial_offer, start_date,
// end_date}.
func readTrial(dec *stripejson.Decoder, it *Item) error {
	if stripejson.IsNull(dec) {
		it.InTrial, it.TrialEnd = false, 0
		return dec.SkipValue()
	}
	it.InTrial = true
	return stripejson.Members(dec, func(key []byte) (err error) {
		if string(key) != "end_date" {
			return dec.SkipValue()
		}
		it.TrialEnd, err = stripejson.Int(dec)
		return err
	})
}

// readPrice reads a price or a legacy plan, expanded (the norm in subscription items) or as an id.
func readPrice(dec *stripejson.Decoder, s *SubscriptionObject) error {
	if dec.PeekKind() != '{' {
		id, err := stripejson.Ref(dec)
		if id != "" {
			s.PriceIDs = append(s.PriceIDs, id)
		}
		return err
	}
	return stripejson.Members(dec, func(key []byte) (err error) {
		var id string
		switch string(key) {
		case "id":
			if id, err = stripejson.String(dec); id != "" {
				s.PriceIDs = append(s.PriceIDs, id)
			}
		case "product":
			if id, err = stripejson.Ref(dec); id != "" {
				s.ProductIDs = append(s.ProductIDs, id)
			}
		default:
			return dec.SkipValue()
		}
		return err
	})
}

func (e *Event) decodeCustomer(ev stripeevent.Event) error {
	c := &CustomerObject{}
	err := stripejson.Object(ev.Object, func(dec *stripejson.Decoder, key []byte) (err error) {
		switch string(key) {
		case "id":
			c.ID, err = stripejson.String(dec)
		case "metadata":
			c.Metadata, err = readMetadata(dec, nil)
		case "deleted":
			c.Deleted, err = stripejson.Bool(dec)
		default:
			return dec.SkipValue()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
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
		err := stripejson.Object(p, func(dec *stripejson.Decoder, key []byte) error {
			if string(key) != "metadata" {
				return dec.SkipValue()
			}
			md, err := readMetadata(dec, c.Metadata)
			if err != nil {
				return fmt.Errorf("previous_attributes: metadata: %w", err)
			}
			b.Metadata = md
			return nil
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
func readMetadata(dec *stripejson.Decoder, base map[string]string) (map[string]string, error) {
	if stripejson.IsNull(dec) {
		return nil, dec.SkipValue()
	}
	var md map[string]string
	if len(base) > 0 {
		md = make(map[string]string, len(base))
		for k, v := range base {
			md[k] = v
		}
	}
	err := stripejson.Members(dec, func(key []byte) error {
		if stripejson.IsNull(dec) {
			delete(md, string(key))
			return dec.SkipValue()
		}
		v, err := stripejson.String(dec)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if md == nil {
			md = make(map[string]string)
		}
		md[string(key)] = v
		return nil
	})
	if len(md) == 0 {
		md = nil
	}
	return md, err
}

func (e *Event) decodeCheckout(ev stripeevent.Event) error {
	var c CheckoutSession
	var mode, status string
	err := stripejson.Object(ev.Object, func(dec *stripejson.Decoder, key []byte) (err error) {
		switch string(key) {
		case "id":
			c.ID, err = stripejson.String(dec)
		case "mode":
			mode, err = stripejson.String(dec)
		case "status":
			status, err = stripejson.String(dec)
		case "client_reference_id":
			c.ClientReferenceID, err = stripejson.String(dec)
		case "subscription":
			c.SubscriptionID, err = stripejson.Ref(dec)
		default:
			return dec.SkipValue()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if mode != "subscription" {
		return nil // a one-off payment or a setup session says nothing about subscriptions
	}
	if stripeevent.IsSnapshot(ev.Type) && status != "complete" {
		return nil // a snapshot of an open or expired session: no user came through it
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
	err := stripejson.Object(ev.Object, func(dec *stripejson.Decoder, key []byte) error {
		if string(key) != "entitlements" {
			return dec.SkipValue()
		}
		seen = true
		keys, more, err := readLookupKeys(dec)
		if err != nil {
			return fmt.Errorf("entitlements: %w", err)
		}
		s.LookupKeys, s.HasMore = keys, more
		return nil
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
		err := stripejson.Object(p, func(dec *stripejson.Decoder, key []byte) error {
			if string(key) != "entitlements" {
				return dec.SkipValue()
			}
			keys, _, err := readLookupKeys(dec)
			if err != nil {
				return fmt.Errorf("previous_attributes: entitlements: %w", err)
			}
			b.LookupKeys = keys
			return nil
		})
		if err != nil {
			return err
		}
		before = &b
	}
	e.prior = &prior{summary: before}
	return nil
}

// readLookupKeys reads the lookup keys of an entitlements list ({"data": [{"lookup_key": ...}],
// "has_more": ...}) and its has_more.
func readLookupKeys(dec *stripejson.Decoder) ([]string, bool, error) {
	var keys []string
	var more bool
	err := stripejson.Members(dec, func(key []byte) error {
		if string(key) == "has_more" {
			var err error
			more, err = stripejson.Bool(dec)
			return err
		}
		if string(key) != "data" {
			return dec.SkipValue()
		}
		return stripejson.Elements(dec, func() error {
			return stripejson.Members(dec, func(key []byte) error {
				if string(key) != "lookup_key" {
					return dec.SkipValue()
				}
				k, err := stripejson.String(dec)
				if k != "" {
					keys = append(keys, k)
				}
				return err
			})
		})
	})
	return sortedSet(keys), more, err
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
