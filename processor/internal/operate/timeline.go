package operate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// AnswerFields are the customer endpoint's answer fields a timeline shows after each event.
type AnswerFields struct {
	Premium  bool     `json:"premium"`
	Status   string   `json:"status"`
	Features []string `json:"features"`
	UserID   *string  `json:"user_id"`
}

// TimelineEvent is one event of a timeline (the contract's shape).
type TimelineEvent struct {
	ID         string       `json:"id"`
	Type       string       `json:"type"`
	CustomerID string       `json:"customer_id,omitempty"` // user timelines only
	Created    time.Time    `json:"created"`
	ReceivedAt *time.Time   `json:"received_at"`
	Changed    bool         `json:"changed"`
	Why        string       `json:"why"`
	After      AnswerFields `json:"after"`
}

// Timeline is the answer of the admin timeline endpoints: why the answer is what it is.
type Timeline struct {
	CustomerID  string          `json:"customer_id,omitempty"`
	CustomerIDs []string        `json:"customer_ids,omitempty"`
	UserID      *string         `json:"user_id"`
	Livemode    bool            `json:"livemode"`
	Account     *string         `json:"account"`
	Events      []TimelineEvent `json:"events"`
}

// ErrNoHistory means the id has no stored event (customer) or no read-model row (user).
var ErrNoHistory = errors.New("no stored history")

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ExplainCustomer loads a customer's stored history through the event store and explains it
// with the derivation's own fold (subscription.Explain). Stored events the current code cannot
// read are listed as undecodable, as the projector leaves them out.
func ExplainCustomer(ctx context.Context, q eventstore.Querier, k scope.Key, rules subscription.Rules) ([]subscription.Step, map[string]time.Time, error) {
	customerID := k.ID
	var events, undecodable []subscription.Event
	var read []string
	err := eventstore.ForEachEnvelope(ctx, q, []scope.Key{k}, func(e eventstore.Envelope) error {
		env := subscription.Event{ID: e.ID, Type: e.Type, Created: e.Created, CustomerID: e.Customer.ID}
		if subscription.ReadsObject(e.Type) {
			read = append(read, e.ID)
		} else {
			events = append(events, env)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(events)+len(read) == 0 {
		return nil, nil, fmt.Errorf("customer %s: %w", customerID, ErrNoHistory)
	}
	if len(read) > 0 {
		stored, err := eventstore.Payloads(ctx, q, read)
		if err != nil {
			return nil, nil, err
		}
		for _, s := range stored {
			ev, err := stripeevent.Parse(s.Payload)
			var d subscription.Event
			if err == nil {
				d, err = subscription.Decode(ev)
			}
			if err != nil {
				undecodable = append(undecodable, subscription.Event{ID: s.ID, Type: ev.Type, Created: ev.Created, CustomerID: s.Customer.ID})
				continue
			}
			events = append(events, d)
		}
	}
	steps := subscription.Explain(customerID, events, undecodable, rules)
	ids := make([]string, len(steps))
	for i, s := range steps {
		ids[i] = s.Event.ID
	}
	received, err := eventstore.ReceivedAt(ctx, q, ids)
	if err != nil {
		return nil, nil, err
	}
	return steps, received, nil
}

func FieldsOf(e subscription.Entitlement, userID string) AnswerFields {
	f := e.Features
	if f == nil {
		f = []string{}
	}
	return AnswerFields{Premium: e.Premium, Status: e.Status, Features: f, UserID: nullable(userID)}
}

func EventOf(s subscription.Step, received map[string]time.Time) TimelineEvent {
	te := TimelineEvent{ID: s.Event.ID, Type: s.Event.Type, Created: subscription.TimeOf(s.Event.Created),
		Changed: s.Changed, Why: s.Why}
	if at, ok := received[s.Event.ID]; ok {
		te.ReceivedAt = &at
	}
	return te
}

// CustomerTimeline is the timeline of one customer: every stored event once, in the order the
// derivation applied them, each with the customer's answer after it.
//
// A customer id names one customer in one scope (Stripe's ids are unique), so it needs no scope:
// the scope is the one its events were stored in (the first, should a test fixture reuse an id).
func CustomerTimeline(ctx context.Context, q eventstore.Querier, customerID string, rules subscription.Rules) (Timeline, error) {
	keys, err := eventstore.CustomerScopes(ctx, q, customerID)
	if err != nil {
		return Timeline{}, err
	}
	if len(keys) == 0 {
		return Timeline{}, fmt.Errorf("customer %s: %w", customerID, ErrNoHistory)
	}
	k := keys[0]
	events, userID, err := CustomerEvents(ctx, q, k, rules)
	if err != nil {
		return Timeline{}, err
	}
	return Timeline{CustomerID: customerID, Livemode: k.Livemode, Account: nullable(k.Account), Events: events, UserID: nullable(userID)}, nil
}

// CustomerEvents are the timeline events of customer k (in its scope): every stored event once,
// in the order the derivation applied them, each with the customer's answer after it, and the
// user id the customer carries at the end. The error wraps ErrNoHistory when k has no event.
func CustomerEvents(ctx context.Context, q eventstore.Querier, k scope.Key, rules subscription.Rules) ([]TimelineEvent, string, error) {
	steps, received, err := ExplainCustomer(ctx, q, k, rules)
	if err != nil {
		return nil, "", err
	}
	events := make([]TimelineEvent, 0, len(steps))
	for _, s := range steps {
		te := EventOf(s, received)
		te.After = FieldsOf(s.Entitlement, s.State.UserID)
		events = append(events, te)
	}
	return events, steps[len(steps)-1].State.UserID, nil
}

// UserTimeline merges the timelines of the user's customers (those the read model lists for it)
// by Stripe's created, then customer id, each customer's events in their derivation order, with
// the user's grants in the same scope: each created, revoked or expired (type
// tollgate.grant.<action>, id the grant's) at its time, after the events of that second, its why
// "grt_… by ops until …: reason". After each entry it shows the user's answer: the union of the
// customers that carried the user id at that point, as the user endpoint merges them, with the
// grants active then on top.
func UserTimeline(ctx context.Context, q entitlement.Querier, userID string, sc scope.Scope, rules subscription.Rules) (Timeline, error) {
	u, err := entitlement.GetUser(ctx, q, sc.Of(userID))
	if errors.Is(err, entitlement.ErrNotFound) {
		return Timeline{}, fmt.Errorf("user %s: %w", userID, ErrNoHistory)
	}
	if err != nil {
		return Timeline{}, err
	}
	type item struct {
		customer int
		step     subscription.Step
		received map[string]time.Time
		grant    *grant.Entry // set for a grant's entry (customer -1)
	}
	var items []item
	for ci, c := range u.CustomerIDs {
		steps, received, err := ExplainCustomer(ctx, q, sc.Of(c), rules)
		if err != nil && !errors.Is(err, ErrNoHistory) {
			return Timeline{}, err
		}
		for _, s := range steps {
			items = append(items, item{ci, s, received, nil})
		}
	}
	log, err := grant.Log(ctx, q, sc.Of(userID))
	if err != nil {
		return Timeline{}, err
	}
	for i := range log {
		e := &log[i]
		items = append(items, item{customer: len(u.CustomerIDs), grant: e,
			step: subscription.Step{Event: subscription.Event{ID: e.Grant.ID, Type: "tollgate.grant." + e.Action, Created: e.At.Unix()}}})
	}
	// Stable: each customer's steps keep the derivation's order, the grants their log's.
	slices.SortStableFunc(items, func(a, b item) int {
		if a.step.Event.Created != b.step.Event.Created {
			return int(a.step.Event.Created - b.step.Event.Created)
		}
		return a.customer - b.customer
	})
	current := make([]*subscription.Step, len(u.CustomerIDs))
	active := map[string]subscription.Grant{}
	tl := Timeline{UserID: &u.UserID, CustomerIDs: u.CustomerIDs, Livemode: sc.Livemode, Account: nullable(sc.Account),
		Events: make([]TimelineEvent, 0, len(items))}
	var prev AnswerFields
	for i, it := range items {
		var te TimelineEvent
		if g := it.grant; g != nil {
			if g.Action == "created" {
				active[g.Grant.ID] = subscription.Grant{Features: g.Grant.Features, Limits: g.Grant.Limits}
			} else {
				delete(active, g.Grant.ID)
			}
			at := g.At
			te = TimelineEvent{ID: g.Grant.ID, Type: it.step.Event.Type, Created: at, ReceivedAt: &at, Why: g.Why()}
		} else {
			current[it.customer] = &it.step
			te = EventOf(it.step, it.received)
			te.CustomerID = u.CustomerIDs[it.customer]
		}
		var ents []subscription.Entitlement
		for _, s := range current {
			if s != nil && s.State.UserID == userID {
				ents = append(ents, s.Entitlement)
			}
		}
		terms := make([]subscription.Grant, 0, len(active))
		for _, id := range slices.Sorted(maps.Keys(active)) {
			terms = append(terms, active[id])
		}
		after := FieldsOf(subscription.WithGrants(subscription.Merge(ents...), terms...), "")
		if len(ents) > 0 || len(active) > 0 {
			after.UserID = &u.UserID
		}
		te.After = after
		te.Changed = i == 0 || !sameFields(prev, after)
		tl.Events = append(tl.Events, te)
		prev = after
	}
	return tl, nil
}

func sameFields(a, b AnswerFields) bool {
	return a.Premium == b.Premium && a.Status == b.Status && slices.Equal(a.Features, b.Features) &&
		(a.UserID == nil) == (b.UserID == nil)
}

// PrintTimeline writes a timeline as an aligned table, one event a line, the answer after it.
func PrintTimeline(w io.Writer, tl Timeline) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "CREATED\tEVENT\tTYPE\tCUSTOMER\tCHANGED\tPREMIUM\tSTATUS\tFEATURES\tUSER\tWHY")
	for _, e := range tl.Events {
		user := "-"
		if e.After.UserID != nil {
			user = *e.After.UserID
		}
		changed := ""
		if e.Changed {
			changed = "*"
		}
		customer := e.CustomerID
		if customer == "" {
			customer = tl.CustomerID
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\n", e.Created.Format(time.RFC3339), e.ID, e.Type,
			customer, changed, e.After.Premium, e.After.Status, strings.Join(e.After.Features, ","), user, e.Why)
	}
	return tw.Flush()
}
