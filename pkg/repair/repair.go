// Package repair holds every statement on pending_repairs: the objects the processor must read
// from the Stripe API and store as snapshot events because an event named them without their
// (whole) state, and what it needs to decide which events those are.
//
// A repair is recorded in the transaction that stores the event asking for it, so it cannot be
// lost; it stays open until the snapshots are published into the stream (Done), for as long as
// that takes (without STRIPE_API_KEY, until a key is configured).
package repair

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// The object types a repair reads, by Stripe's object names.
const (
	ObjectSubscription       = "subscription"
	ObjectCustomer           = "customer"
	ObjectCheckoutSession    = "checkout.session"
	ObjectEntitlementSummary = "entitlements.active_entitlement_summary"
	// ObjectEvent is a v2 event to retrieve first (GET /v2/core/events/{id}): the notification
	// of an event generation failure names no object; the event names it in
	// data.impact.related_object.
	ObjectEvent = "v2.core.event"
	// ObjectCustomerSubscriptions is an operator's repair of a customer (cus_…, or an Accounts v2
	// acct_…): the customer object and every subscription Stripe lists for it (status=all),
	// including any Tollgate never heard of because its events were lost.
	ObjectCustomerSubscriptions = "customer.subscriptions"
)

// EventGenerationFailureResolved is the thin event Stripe sends when it failed to create events
// for an object, which are then absent from GET /v1/events for good.
const EventGenerationFailureResolved = "v2.core.health.event_generation_failure.resolved"

// The reasons of a repair.
const (
	ReasonThinEvent      = "thin event"
	ReasonGenerationFail = "event generation failure"
	ReasonSummaryHasMore = "entitlement summary has_more"
	ReasonReconcile      = "reconcile drift"
)

// Repair is one row of pending_repairs.
type Repair struct {
	ID            int64 // set by the store
	ObjectType    string
	ObjectID      string
	Livemode      bool
	Account       string
	SourceEventID string
	Reason        string
	Attempts      int
}

// Needed says which repair ev asks for, and whether it asks for one: a thin event naming a
// subscription, customer or checkout session, every event generation failure (whatever its
// related object; one that names none, as Stripe's notification does, asks for the event itself,
// ObjectEvent, whose data names it), and an entitlement summary whose entitlements has_more.
// Other thin events (a v1.billing.meter.* and the like) concern nothing Tollgate derives. ev
// must come from stripeevent.Parse.
func Needed(ev stripeevent.Event) (Repair, bool) {
	r := Repair{Livemode: ev.Livemode, Account: ev.Account, SourceEventID: ev.ID}
	if ev.Thin {
		r.ObjectType, r.ObjectID, r.Reason = ev.RelatedObject.Type, ev.RelatedObject.ID, ReasonThinEvent
		if ev.RelatedContext != "" {
			r.Account = ev.RelatedContext
		}
		if ev.Type == EventGenerationFailureResolved {
			r.Reason = ReasonGenerationFail
			if r.ObjectID == "" {
				r.ObjectType, r.ObjectID = ObjectEvent, ev.ID
			}
		}
		switch {
		case r.ObjectID == "":
			return Repair{}, false
		case r.ObjectType == ObjectSubscription, r.ObjectType == ObjectCustomer, r.ObjectType == ObjectCheckoutSession:
			return r, true
		case r.Reason == ReasonGenerationFail:
			// Recorded whatever the object, so that every lost event is seen; one Tollgate does
			// not derive from is closed as not_derived.
			return r, true
		}
		return Repair{}, false
	}
	if ev.Type != "entitlements.active_entitlement_summary.updated" {
		return Repair{}, false
	}
	d, err := subscription.Decode(ev)
	if err != nil || d.EntitlementSummary == nil || !d.EntitlementSummary.HasMore || ev.CustomerID == "" {
		return Repair{}, false // an undecodable summary is the consumer's to report
	}
	r.ObjectType, r.ObjectID, r.Reason = ObjectEntitlementSummary, ev.CustomerID, ReasonSummaryHasMore
	return r, true
}

// Execer runs statements: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Enqueue records repairs; one already recorded for the same event and object (a redelivery)
// is left as it is, done or not.
func Enqueue(ctx context.Context, db Execer, rs []Repair) error {
	for _, r := range rs {
		_, err := db.Exec(ctx, `INSERT INTO pending_repairs (object_type, object_id, livemode, account, source_event_id, reason)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (source_event_id, object_type, object_id) DO NOTHING`,
			r.ObjectType, r.ObjectID, r.Livemode, r.Account, r.SourceEventID, r.Reason)
		if err != nil {
			return fmt.Errorf("enqueue repair of %s %s (event %s): %w", r.ObjectType, r.ObjectID, r.SourceEventID, err)
		}
	}
	return nil
}

// Claim returns up to limit open repairs, oldest first, locked FOR UPDATE SKIP LOCKED until tx
// ends: concurrent processors each claim others.
func Claim(ctx context.Context, tx pgx.Tx, limit int) ([]Repair, error) {
	rows, err := tx.Query(ctx, `SELECT id, object_type, object_id, livemode, account, source_event_id, reason, attempts
		FROM pending_repairs WHERE done_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
	if err != nil {
		return nil, fmt.Errorf("claim repairs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Repair, error) {
		var r Repair
		err := row.Scan(&r.ID, &r.ObjectType, &r.ObjectID, &r.Livemode, &r.Account, &r.SourceEventID, &r.Reason, &r.Attempts)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim repairs: %w", err)
	}
	return out, nil
}

// Done closes a repair with its outcome ("applied", or why nothing was stored).
func Done(ctx context.Context, db Execer, id int64, outcome string) error {
	if _, err := db.Exec(ctx, `UPDATE pending_repairs SET done_at = now(), outcome = $2, attempts = attempts + 1 WHERE id = $1`, id, outcome); err != nil {
		return fmt.Errorf("close repair %d: %w", id, err)
	}
	return nil
}

// Failed records a failed attempt; the repair stays open.
func Failed(ctx context.Context, db Execer, id int64, cause error) error {
	if _, err := db.Exec(ctx, `UPDATE pending_repairs SET attempts = attempts + 1, last_error = $2 WHERE id = $1`, id, cause.Error()); err != nil {
		return fmt.Errorf("record failed repair %d: %w", id, err)
	}
	return nil
}

// CountOpen is the number of open repairs by object type.
func CountOpen(ctx context.Context, db Querier) (map[string]int, error) {
	rows, err := db.Query(ctx, `SELECT object_type, count(*) FROM pending_repairs WHERE done_at IS NULL GROUP BY object_type`)
	if err != nil {
		return nil, fmt.Errorf("count repairs: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var typ string
		var n int
		if err := rows.Scan(&typ, &n); err != nil {
			return nil, fmt.Errorf("count repairs: %w", err)
		}
		out[typ] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count repairs: %w", err)
	}
	return out, nil
}
