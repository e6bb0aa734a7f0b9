package subscription

import (
	"slices"
	"strings"
	"time"
)

// State is what a customer's event history says about the customer.
type State struct {
	CustomerID string
	// UserID is the app's user: the customer's metadata[Rules.UserIDMetadataKey] in its latest
	// customer event, else the client_reference_id of its latest completed subscription-mode
	// checkout session that had one; "" when unknown.
	UserID string
	// Deleted is true once a customer.deleted event was seen.
	Deleted bool
	// Subscriptions are the customer's subscriptions, sorted by ID; nil when none.
	Subscriptions []Subscription
	// EntitlementFeatures are the lookup keys of the latest
	// entitlements.active_entitlement_summary.updated, sorted; nil when none. They never grant
	// access by themselves (see Entitlement).
	EntitlementFeatures []string
	// LastEventID and LastEventCreated identify the last event of the history in Order, whatever
	// its type; "" and 0 for an empty history.
	LastEventID      string
	LastEventCreated int64
}

// Subscription is the state of one subscription: its latest object in the history, with status
// canceled once a customer.subscription.deleted or customer.deleted event was seen. Times are UTC,
// nil when absent.
type Subscription struct {
	ID         string
	CustomerID string
	Status     string
	PriceIDs   []string // sorted, deduplicated; nil when none
	ProductIDs []string // sorted, deduplicated; nil when none
	// Items are the subscription's items with their quantities, as SubscriptionObject.Items; nil
	// when none.
	Items             []Item
	CurrentPeriodEnd  *time.Time
	TrialEnd          *time.Time
	EndedAt           *time.Time // when deleted without ended_at: the deleting event's time
	CancelAtPeriodEnd bool
	PauseCollection   *PauseCollection // nil when collection is not paused
}

// PauseCollection is a subscription's pause_collection.
type PauseCollection struct {
	Behavior  string     // keep_as_draft, mark_uncollectible or void
	ResumesAt *time.Time // nil when the pause has no end
}

// DefaultUserIDMetadataKey is the customer metadata key holding the app's user id when
// Rules.UserIDMetadataKey is empty.
const DefaultUserIDMetadataKey = "user_id"

// Derive folds a customer's events into its state. The events may come in any order and any
// number of times: Derive skips events of other customers (a CustomerID set and different from
// customerID), keeps one event per ID (events with equal IDs must be identical, as Stripe's are),
// and puts them in Order, so any permutation of the same set, with any duplicates, gives an equal
// State. Derive reads rules.UserIDMetadataKey only; the rest of the rules apply in
// State.Entitlement. It does not modify events.
func Derive(customerID string, events []Event, rules Rules) State {
	history := historyOf(customerID, events)
	f := newFold(customerID, rules)
	for i := range history {
		f.apply(&history[i])
	}
	return f.state()
}

// historyOf is the customer's history as Derive folds it: the events of customerID (or of no
// customer), one per ID, in Order. It does not modify events.
func historyOf(customerID string, events []Event) []Event {
	history := make([]Event, 0, len(events))
	for i := range events {
		if c := events[i].CustomerID; c == "" || customerID == "" || c == customerID {
			history = append(history, events[i])
		}
	}
	slices.SortFunc(history, compareCreatedID)
	history = dedupe(history)
	Order(history)
	return history
}

// fold is the derivation's one copy of the rules: apply takes the history's events one at a time
// in Order, state says what the events so far add up to. Derive and Explain both run it.
type fold struct {
	customerID      string
	key             string // the user id metadata key
	subs            map[string]*subscriptionState
	metadataUser    string
	checkoutUser    string
	customerDeleted int64
	summary         *EntitlementSummary
	last            *Event
}

type subscriptionState struct {
	object    *SubscriptionObject
	deletedAt int64 // the first customer.subscription.deleted, 0 when none
}

func newFold(customerID string, rules Rules) *fold {
	key := rules.UserIDMetadataKey
	if key == "" {
		key = DefaultUserIDMetadataKey
	}
	return &fold{customerID: customerID, key: key}
}

// apply folds one event, the next of the history in Order.
func (f *fold) apply(e *Event) {
	f.last = e
	switch {
	case e.Subscription != nil:
		if f.subs == nil {
			f.subs = make(map[string]*subscriptionState)
		}
		s := f.subs[e.Subscription.ID]
		if s == nil {
			s = &subscriptionState{}
			f.subs[e.Subscription.ID] = s
		}
		s.object = e.Subscription
		if e.Type == "customer.subscription.deleted" && s.deletedAt == 0 {
			s.deletedAt = e.Created
		}
	case e.Customer != nil:
		f.metadataUser = e.Customer.Metadata[f.key]
		if (e.Type == "customer.deleted" || e.Customer.Deleted) && f.customerDeleted == 0 {
			f.customerDeleted = e.Created
		}
	case e.Checkout != nil:
		if e.Checkout.ClientReferenceID != "" {
			f.checkoutUser = e.Checkout.ClientReferenceID
		}
	case e.EntitlementSummary != nil:
		f.summary = e.EntitlementSummary
	}
}

// state is the State of the events applied so far.
func (f *fold) state() State {
	st := State{CustomerID: f.customerID}
	if f.last != nil {
		st.LastEventID, st.LastEventCreated = f.last.ID, f.last.Created
	}
	st.UserID = f.metadataUser
	if st.UserID == "" {
		st.UserID = f.checkoutUser
	}
	st.Deleted = f.customerDeleted != 0
	if f.summary != nil {
		st.EntitlementFeatures = slices.Clone(f.summary.LookupKeys)
	}
	for _, s := range f.subs {
		sub := subscriptionOf(s.object)
		deletedAt := s.deletedAt
		if deletedAt == 0 || (f.customerDeleted != 0 && f.customerDeleted < deletedAt) {
			deletedAt = f.customerDeleted
		}
		if s.deletedAt != 0 || f.customerDeleted != 0 {
			// As Stripe does: deleting a subscription or its customer cancels it for good, whatever
			// a later event of the subscription says.
			sub.Status = StatusCanceled
			if sub.EndedAt == nil {
				sub.EndedAt = timeOf(deletedAt)
			}
		}
		st.Subscriptions = append(st.Subscriptions, sub)
	}
	slices.SortFunc(st.Subscriptions, func(a, b Subscription) int { return strings.Compare(a.ID, b.ID) })
	return st
}

// dedupe removes events whose ID equals the one before them from a slice sorted by compareCreatedID.
func dedupe(events []Event) []Event {
	if len(events) < 2 {
		return events
	}
	out := 1
	for i := 1; i < len(events); i++ {
		if events[i].ID != events[out-1].ID {
			events[out] = events[i]
			out++
		}
	}
	clear(events[out:])
	return events[:out]
}

// subscriptionOf is the state of a subscription whose latest object is o. A subscription an item
// of which is in a Trial Offer (items[].current_trial) while its status is active is in a trial
// the customer may pay for: it is answered trialing, and its trial_end, when the subscription has
// none of its own, is the latest end of its items' trial offers.
func subscriptionOf(o *SubscriptionObject) Subscription {
	s := Subscription{
		ID:                o.ID,
		CustomerID:        o.CustomerID,
		Status:            o.Status,
		PriceIDs:          slices.Clone(o.PriceIDs),
		ProductIDs:        slices.Clone(o.ProductIDs),
		Items:             slices.Clone(o.Items),
		CurrentPeriodEnd:  timeOf(o.CurrentPeriodEnd),
		TrialEnd:          timeOf(o.TrialEnd),
		EndedAt:           timeOf(o.EndedAt),
		CancelAtPeriodEnd: o.CancelAtPeriodEnd,
	}
	var offerEnd int64
	inOffer := false
	for _, it := range o.Items {
		if it.InTrial {
			inOffer = true
			offerEnd = max(offerEnd, it.TrialEnd)
		}
	}
	if inOffer && s.Status == StatusActive {
		s.Status = StatusTrialing
	}
	if inOffer && s.TrialEnd == nil {
		s.TrialEnd = timeOf(offerEnd)
	}
	if o.Paused {
		s.PauseCollection = &PauseCollection{Behavior: o.PauseBehavior, ResumesAt: timeOf(o.PauseResumesAt)}
	}
	return s
}

// timeOf converts Unix seconds to a UTC time; nil for 0 (absent). Values outside what JSON's
// RFC 3339 and Postgres hold are clamped (ClampUnix).
func timeOf(unix int64) *time.Time {
	if unix == 0 {
		return nil
	}
	t := TimeOf(unix)
	return &t
}

// The Unix seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range of years that
// RFC 3339 (and so Go's time.Time JSON encoding) can write. Postgres holds more.
const (
	MinUnix = -62135596800
	MaxUnix = 253402300799
)

// TimeOf is Unix seconds as a UTC time, clamped to [MinUnix, MaxUnix]: a subscription whose
// current_period_end is in year 10000 (or INT64_MAX) answers 9999-12-31T23:59:59Z instead of
// failing every encoding of its customer for ever.
func TimeOf(unix int64) time.Time {
	return time.Unix(min(max(unix, MinUnix), MaxUnix), 0).UTC()
}
