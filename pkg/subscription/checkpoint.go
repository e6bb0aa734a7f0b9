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
const CheckpointVersion = 1

// Sentinel errors of Resume.
var (
	// ErrCheckpointInvalid means the checkpoint was made by another version of the fold or with
	// another user id metadata key (the one rule the fold reads).
	ErrCheckpointInvalid = errors.New("checkpoint of another fold version or rules")
	// ErrBeforeCheckpoint means a tail event is not newer than the checkpoint (a late delivery
	// or a backfill): the history must be derived from scratch.
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
	Created int64     `json:"created"`
	Fold    foldState `json:"fold"`
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
// scratch. Resume is pure and modifies neither cp nor tail.
func Resume(customerID string, cp *Checkpoint, tail []Event, rules Rules) (State, Checkpoint, error) {
	f := newFold(customerID, rules)
	heads := make(map[objectKey]*Event)
	var done []Event
	var next Checkpoint
	if cp != nil {
		if cp.Version != CheckpointVersion || cp.UserIDMetadataKey != f.key {
			return State{}, Checkpoint{}, ErrCheckpointInvalid
		}
		for i := range tail {
			if tail[i].Created <= cp.Created {
				return State{}, Checkpoint{}, ErrBeforeCheckpoint
			}
		}
		done = f.restore(cp)
		for i := range done {
			heads[keyOf(&done[i])] = &done[i]
		}
		next = *cp
	}
	history := historyOf(customerID, tail)
	orderAfter(done, history)
	if n := len(history); n > 0 {
		t := history[n-1].Created - 1
		snapshot := func() { next = f.checkpoint(t, heads) }
		taken := cp != nil && t == cp.Created
		for i := range history {
			e := &history[i]
			if !taken && e.Created > t {
				snapshot()
				taken = true
			}
			f.apply(e)
			if k := keyOf(e); k != (objectKey{}) {
				heads[k] = e
			}
		}
		if !taken {
			snapshot()
		}
	} else if cp == nil {
		next = f.checkpoint(0, heads) // an empty history: a checkpoint of nothing
	}
	return f.state(), next, nil
}

// checkpoint is the fold's state as a Checkpoint at t, with the tie-break's heads.
func (f *fold) checkpoint(t int64, heads map[objectKey]*Event) Checkpoint {
	cp := Checkpoint{Version: CheckpointVersion, UserIDMetadataKey: f.key, Created: t}
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
