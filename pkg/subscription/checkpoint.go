package subscription

import (
	"cmp"
	"errors"
	"slices"
	"strings"
)

// CheckpointVersion is the version of the Checkpoint encoding and of the fold it stores. Change
// it whenever the fold, the tie-break or the encoding changes: a checkpoint of another version is
// refused by Resume (ErrCheckpointInvalid), so the customer is derived from scratch again.
//
// Version 2 (the ladder) added Events; version 3 the subscription items (quantities and trial
// offers, for limits).
const CheckpointVersion = 3

// Sentinel errors of Resume.
var (
	// ErrCheckpointInvalid means the checkpoint was made by another version of the fold or with
	// another user id metadata key (the one rule the fold reads).
	ErrCheckpointInvalid = errors.New("checkpoint of another fold version or rules")
	// ErrBeforeCheckpoint means a tail event is not newer than the checkpoint (a late delivery
	// or a backfill): the history must be derived from an older checkpoint or from scratch.
	ErrBeforeCheckpoint = errors.New("event at or before the checkpoint")
)

// Checkpoint is the derivation of a customer's history up to the end of a second: the fold's
// state after every event with Created <= Created, and the last event of each object the
// same-second tie-break follows (all Order reads of earlier seconds). Resuming from it with the
// events after Created gives exactly the State that Derive gives for the whole history. It is
// plain data, JSON-serializable; the zero Checkpoint is not valid (use Resume with nil).
type Checkpoint struct {
	Version           int    `json:"version"`
	UserIDMetadataKey string `json:"user_id_metadata_key"`
	// Created is T: the checkpoint holds every event with created <= T and no other.
	Created int64 `json:"created"`
	// Events is how many events it folded: the customer's distinct events with created <= T.
	// The ladder spaces checkpoints by it (Ladder.Thin).
	Events int64     `json:"events"`
	Fold   foldState `json:"fold"`
}

type foldState struct {
	Subs            []subState          `json:"subs,omitempty"`
	MetadataUser    string              `json:"metadata_user,omitempty"`
	CheckoutUser    string              `json:"checkout_user,omitempty"`
	CustomerDeleted int64               `json:"customer_deleted,omitempty"`
	Summary         *EntitlementSummary `json:"summary,omitempty"`
	LastID          string              `json:"last_id,omitempty"`
	LastCreated     int64               `json:"last_created,omitempty"`
	Heads           []eventState        `json:"heads,omitempty"`
}

type subState struct {
	Object    subObject `json:"object"`
	DeletedAt int64     `json:"deleted_at,omitempty"`
}

// subObject is a SubscriptionObject with the fields the tie-break compares, exported for JSON.
type subObject struct {
	ID                string   `json:"id"`
	CustomerID        string   `json:"customer_id,omitempty"`
	Status            string   `json:"status,omitempty"`
	PriceIDs          []string `json:"price_ids,omitempty"`
	ProductIDs        []string `json:"product_ids,omitempty"`
	CurrentPeriodEnd  int64    `json:"current_period_end,omitempty"`
	TrialEnd          int64    `json:"trial_end,omitempty"`
	EndedAt           int64    `json:"ended_at,omitempty"`
	CancelAtPeriodEnd bool     `json:"cancel_at_period_end,omitempty"`
	Paused            bool     `json:"paused,omitempty"`
	PauseBehavior     string   `json:"pause_behavior,omitempty"`
	PauseResumesAt    int64    `json:"pause_resumes_at,omitempty"`
	PeriodEnd         int64    `json:"period_end,omitempty"`
	PeriodStart       int64    `json:"period_start,omitempty"`
	ItemsPeriodEnd    int64    `json:"items_period_end,omitempty"`
	CancelAt          int64    `json:"cancel_at,omitempty"`
	CanceledAt        int64    `json:"canceled_at,omitempty"`
	LatestInvoice     string   `json:"latest_invoice,omitempty"`
	PlanPriceIDs      []string `json:"plan_price_ids,omitempty"`
	PlanProductIDs    []string `json:"plan_product_ids,omitempty"`
	ItemsSeen         bool     `json:"items_seen,omitempty"`
	Items             []Item   `json:"items,omitempty"`
	PlanQuantity      int64    `json:"plan_quantity,omitempty"`
}

// eventState is what the tie-break reads of an earlier second's event (keyOf, canFollow's a).
type eventState struct {
	ID           string              `json:"id"`
	Type         string              `json:"type"`
	Created      int64               `json:"created"`
	CustomerID   string              `json:"customer_id,omitempty"`
	Subscription *subObject          `json:"subscription,omitempty"`
	Customer     *CustomerObject     `json:"customer,omitempty"`
	Summary      *EntitlementSummary `json:"summary,omitempty"`
}

func toSubObject(o *SubscriptionObject) subObject {
	return subObject{
		ID: o.ID, CustomerID: o.CustomerID, Status: o.Status,
		PriceIDs: slices.Clone(o.PriceIDs), ProductIDs: slices.Clone(o.ProductIDs),
		CurrentPeriodEnd: o.CurrentPeriodEnd, TrialEnd: o.TrialEnd, EndedAt: o.EndedAt,
		CancelAtPeriodEnd: o.CancelAtPeriodEnd, Paused: o.Paused, PauseBehavior: o.PauseBehavior,
		PauseResumesAt: o.PauseResumesAt, PeriodEnd: o.periodEnd, PeriodStart: o.periodStart,
		ItemsPeriodEnd: o.itemsPeriodEnd, CancelAt: o.cancelAt, CanceledAt: o.canceledAt,
		LatestInvoice: o.latestInvoice, PlanPriceIDs: slices.Clone(o.planPriceIDs),
		PlanProductIDs: slices.Clone(o.planProductIDs), ItemsSeen: o.itemsSeen,
		Items: slices.Clone(o.Items), PlanQuantity: o.planQuantity,
	}
}

func (s subObject) object() *SubscriptionObject {
	return &SubscriptionObject{
		ID: s.ID, CustomerID: s.CustomerID, Status: s.Status,
		PriceIDs: slices.Clone(s.PriceIDs), ProductIDs: slices.Clone(s.ProductIDs),
		CurrentPeriodEnd: s.CurrentPeriodEnd, TrialEnd: s.TrialEnd, EndedAt: s.EndedAt,
		CancelAtPeriodEnd: s.CancelAtPeriodEnd, Paused: s.Paused, PauseBehavior: s.PauseBehavior,
		PauseResumesAt: s.PauseResumesAt, periodEnd: s.PeriodEnd, periodStart: s.PeriodStart,
		itemsPeriodEnd: s.ItemsPeriodEnd, cancelAt: s.CancelAt, canceledAt: s.CanceledAt,
		latestInvoice: s.LatestInvoice, planPriceIDs: slices.Clone(s.PlanPriceIDs),
		planProductIDs: slices.Clone(s.PlanProductIDs), itemsSeen: s.ItemsSeen,
		Items: slices.Clone(s.Items), planQuantity: s.PlanQuantity,
	}
}

// Resume derives the customer's state from a checkpoint (nil: from scratch) and the events after
// it, and returns the checkpoint to resume from next time: at T = the newest event's second
// minus one, so that a later event of that same second still takes its place in the tie-break.
// The tail is treated as Derive treats a history (other customers' events skipped, one event per
// ID, put in Order after the checkpoint's), so
//
//	Resume(c, nil, h[:k], r) then Resume(c, &cp, h[k:], r)
//
// gives Derive(c, h, r) whenever every event of h[k:] is newer than cp.Created. It returns
// ErrCheckpointInvalid for a checkpoint of another version or user id metadata key and
// ErrBeforeCheckpoint when a tail event has Created <= cp.Created; the caller then derives from
// an older checkpoint or from scratch. Resume is pure and modifies neither cp nor tail.
func Resume(customerID string, cp *Checkpoint, tail []Event, rules Rules) (State, Checkpoint, error) {
	state, cps, err := Ladder{}.Resume(customerID, cp, tail, rules)
	if err != nil {
		return State{}, Checkpoint{}, err
	}
	if len(cps) == 0 {
		return state, *cp, nil // nothing after cp: it stays the newest
	}
	return state, cps[len(cps)-1], nil
}

// Resume is the package's Resume that also returns the rungs the ladder l wants (see Thin)
// between cp and the new newest checkpoint: cps are the new checkpoints in Created order, each after
// cp.Created, the last one the newest (the one Resume returns); cps is empty when the tail has
// nothing after cp's T in a second before its newest (cp stays the newest). A rung's T is the end
// of a second whose events it all folded (the second of the last event before it), never the
// newest event's second, so every checkpoint in cps has the same contract as Resume's: resuming
// from it with the events after its Created gives Derive of the whole history. A rung is taken at
// the first second boundary of each ladder bucket (relative to the new newest checkpoint's
// Events) after cp's, so l.Thin of the customer's older rungs plus cps keeps the oldest of each
// bucket. The errors are Resume's; it is pure and modifies neither cp nor tail.
func (l Ladder) Resume(customerID string, cp *Checkpoint, tail []Event, rules Rules) (State, []Checkpoint, error) {
	f := newFold(customerID, rules)
	heads := make(map[objectKey]*Event)
	var done []Event
	var base int64
	if cp != nil {
		if cp.Version != CheckpointVersion || cp.UserIDMetadataKey != f.key {
			return State{}, nil, ErrCheckpointInvalid
		}
		for i := range tail {
			if tail[i].Created <= cp.Created {
				return State{}, nil, ErrBeforeCheckpoint
			}
		}
		done = f.restore(cp)
		for i := range done {
			heads[keyOf(&done[i])] = &done[i]
		}
		base = cp.Events
	}
	history := historyOf(customerID, tail)
	orderAfter(done, history)
	var out []Checkpoint
	if n := len(history); n > 0 {
		t := history[n-1].Created - 1
		head := base + int64(firstAfter(history, t))
		var last ladderBucket
		haveLast := cp != nil
		if haveLast {
			last = l.bucketOf(base, head)
		}
		taken := cp != nil && t == cp.Created
		for i := range history {
			e := &history[i]
			folded := base + int64(i)
			if !taken && e.Created > t {
				out = append(out, f.checkpoint(t, folded, heads))
				taken = true
			} else if !taken && i > 0 && e.Created != history[i-1].Created {
				// The end of the second of history[i-1], before t: a rung if it opens a bucket.
				if b := l.bucketOf(folded, head); !haveLast || b != last {
					out = append(out, f.checkpoint(history[i-1].Created, folded, heads))
					last, haveLast = b, true
				}
			}
			f.apply(e)
			if k := keyOf(e); k != (objectKey{}) {
				heads[k] = e
			}
		}
		if !taken {
			out = append(out, f.checkpoint(t, base+int64(n), heads))
		}
	} else if cp == nil {
		out = append(out, f.checkpoint(0, 0, heads)) // an empty history: a checkpoint of nothing
	}
	return f.state(), out, nil
}

// firstAfter is the index of the first event of history (in Created order) with Created > t.
func firstAfter(history []Event, t int64) int {
	i, _ := slices.BinarySearchFunc(history, t, func(e Event, t int64) int {
		if e.Created <= t {
			return -1
		}
		return 1
	})
	return i
}

// checkpoint is the fold's state as a Checkpoint at t after events events, with the tie-break's
// heads.
func (f *fold) checkpoint(t, events int64, heads map[objectKey]*Event) Checkpoint {
	cp := Checkpoint{Version: CheckpointVersion, UserIDMetadataKey: f.key, Created: t, Events: events}
	s := &cp.Fold
	s.MetadataUser, s.CheckoutUser, s.CustomerDeleted = f.metadataUser, f.checkoutUser, f.customerDeleted
	if f.summary != nil {
		s.Summary = &EntitlementSummary{LookupKeys: slices.Clone(f.summary.LookupKeys), HasMore: f.summary.HasMore}
	}
	if f.last != nil {
		s.LastID, s.LastCreated = f.last.ID, f.last.Created
	}
	for _, sub := range f.subs {
		s.Subs = append(s.Subs, subState{Object: toSubObject(sub.object), DeletedAt: sub.deletedAt})
	}
	slices.SortFunc(s.Subs, func(a, b subState) int { return strings.Compare(a.Object.ID, b.Object.ID) })
	for _, e := range heads {
		h := eventState{ID: e.ID, Type: e.Type, Created: e.Created, CustomerID: e.CustomerID}
		if e.Subscription != nil {
			o := toSubObject(e.Subscription)
			h.Subscription = &o
		}
		if e.Customer != nil {
			c := *e.Customer
			if c.Metadata != nil {
				c.Metadata = make(map[string]string, len(e.Customer.Metadata))
				for k, v := range e.Customer.Metadata {
					c.Metadata[k] = v
				}
			}
			h.Customer = &c
		}
		if e.EntitlementSummary != nil {
			h.Summary = &EntitlementSummary{LookupKeys: slices.Clone(e.EntitlementSummary.LookupKeys), HasMore: e.EntitlementSummary.HasMore}
		}
		s.Heads = append(s.Heads, h)
	}
	slices.SortFunc(s.Heads, func(a, b eventState) int {
		return cmp.Or(cmp.Compare(a.Created, b.Created), strings.Compare(a.ID, b.ID))
	})
	return cp
}

// restore sets the fold to the checkpoint's state and returns its heads as events, in
// (created, id) order, for the tie-break of the seconds after it.
func (f *fold) restore(cp *Checkpoint) []Event {
	s := &cp.Fold
	f.metadataUser, f.checkoutUser, f.customerDeleted = s.MetadataUser, s.CheckoutUser, s.CustomerDeleted
	if s.Summary != nil {
		f.summary = &EntitlementSummary{LookupKeys: slices.Clone(s.Summary.LookupKeys), HasMore: s.Summary.HasMore}
	}
	if s.LastID != "" {
		f.last = &Event{ID: s.LastID, Created: s.LastCreated}
	}
	for _, sub := range s.Subs {
		if f.subs == nil {
			f.subs = make(map[string]*subscriptionState, len(s.Subs))
		}
		f.subs[sub.Object.ID] = &subscriptionState{object: sub.Object.object(), deletedAt: sub.DeletedAt}
	}
	done := make([]Event, len(s.Heads))
	for i, h := range s.Heads {
		done[i] = Event{ID: h.ID, Type: h.Type, Created: h.Created, CustomerID: h.CustomerID, Customer: h.Customer}
		if h.Subscription != nil {
			done[i].Subscription = h.Subscription.object()
		}
		if h.Summary != nil {
			done[i].EntitlementSummary = &EntitlementSummary{LookupKeys: slices.Clone(h.Summary.LookupKeys), HasMore: h.Summary.HasMore}
		}
	}
	return done
}
