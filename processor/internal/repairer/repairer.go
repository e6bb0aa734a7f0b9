// Package repairer does the pending repairs: it reads the objects thin events, event
// generation failures and incomplete entitlement summaries need from the Stripe API and
// publishes them as snapshot events into the stream (the one apply path).
package repairer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tollgate/tollgate/processor/internal/service"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/repair"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// How the processor repairs.
const (
	// Every is how often the open repairs are looked at (done with a key, counted without).
	Every = 2 * time.Second
	// repairBatch is the most repairs claimed at once.
	repairBatch = 20
)

// ObjectReader reads objects from the Stripe API; stripeAPI is the real one.
type ObjectReader interface {
	// Object is the object's JSON as the API returns it (GET /v1/<objects>/{id}), of the
	// Connect account when account is not "". An unknown object's error wraps errObjectNotFound.
	Object(ctx context.Context, objectType, id, account string) (json.RawMessage, error)
	// ActiveEntitlements are every active entitlement of customer (all pages).
	ActiveEntitlements(ctx context.Context, customer, account string) ([]json.RawMessage, error)
	// CustomerSubscriptions are every subscription of customer (cus_… or acct_…), any status
	// (all pages).
	CustomerSubscriptions(ctx context.Context, customer, account string) ([]json.RawMessage, error)
}

// snapshot builds the snapshot event of obj (an object of objectType read at fetched), with
// the livemode and account of the repair's source, as stripeevent.Parse reads it.
func snapshot(r repair.Repair, objectType, objectID string, obj json.RawMessage, fetched time.Time) (stripeevent.Event, error) {
	env := map[string]any{
		"id":       stripeevent.SnapshotIDPrefix + r.SourceEventID + "_" + objectID,
		"object":   "event",
		"type":     stripeevent.SnapshotType(objectType),
		"created":  fetched.Unix(),
		"livemode": r.Livemode,
		"data":     map[string]any{"object": obj},
		// Not Stripe's: what made Tollgate read the object.
		"tollgate_repair": map[string]any{"reason": r.Reason, "source_event": r.SourceEventID},
	}
	if r.Account != "" {
		env["account"] = r.Account
	}
	raw, err := json.Marshal(env)
	if err != nil {
		return stripeevent.Event{}, fmt.Errorf("snapshot of %s %s: %w", objectType, objectID, err)
	}
	ev, err := stripeevent.Parse(raw)
	if err == nil {
		err = stripeevent.Validate(ev, fetched)
	}
	if err != nil {
		return stripeevent.Event{}, fmt.Errorf("snapshot of %s %s: %w", objectType, objectID, err)
	}
	return ev, nil
}

// Snapshots reads what repair r needs from the API and returns its snapshot events, in the
// order to publish them: a subscription's customer before the subscription (so the user is
// known), a checkout session's subscription after the session. A v2 event (an event generation
// failure whose notification names no object) is read first for the object its data names. An
// object Stripe does not have gives errObjectNotFound.
func Snapshots(ctx context.Context, api ObjectReader, r repair.Repair, now func() time.Time) ([]stripeevent.Event, error) {
	read := func(typ, id string) (stripeevent.Event, error) {
		obj, err := api.Object(ctx, typ, id, r.Account)
		if err != nil {
			return stripeevent.Event{}, err
		}
		return snapshot(r, typ, id, obj, now())
	}
	withCustomer := func(sub stripeevent.Event) ([]stripeevent.Event, error) {
		if !strings.HasPrefix(sub.CustomerID, "cus_") { // none, or an Accounts v2 acct_: the subscription says it all
			return []stripeevent.Event{sub}, nil
		}
		cus, err := read(repair.ObjectCustomer, sub.CustomerID)
		if err != nil {
			return nil, err
		}
		return []stripeevent.Event{cus, sub}, nil
	}
	switch r.ObjectType {
	case repair.ObjectEvent:
		raw, err := api.Object(ctx, repair.ObjectEvent, r.ObjectID, r.Account)
		if err != nil {
			return nil, err
		}
		ev, err := stripeevent.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("repair %d: read event %s: %w", r.ID, r.ObjectID, err)
		}
		if !ev.Thin || ev.RelatedObject.ID == "" || ev.RelatedObject.Type == repair.ObjectEvent {
			return nil, fmt.Errorf("repair %d: %w: event %s names no object", r.ID, errNotDerived, r.ObjectID)
		}
		named := r
		named.ObjectType, named.ObjectID = ev.RelatedObject.Type, ev.RelatedObject.ID
		if ev.RelatedContext != "" {
			named.Account = ev.RelatedContext
		}
		return Snapshots(ctx, api, named, now)
	case repair.ObjectSubscription:
		sub, err := read(repair.ObjectSubscription, r.ObjectID)
		if err != nil {
			return nil, err
		}
		return withCustomer(sub)
	case repair.ObjectCustomer:
		cus, err := read(repair.ObjectCustomer, r.ObjectID)
		if err != nil {
			return nil, err
		}
		return []stripeevent.Event{cus}, nil
	case repair.ObjectCustomerSubscriptions:
		out := []stripeevent.Event{}
		if strings.HasPrefix(r.ObjectID, "cus_") { // an acct_ customer has no customer object
			cus, err := read(repair.ObjectCustomer, r.ObjectID)
			if err != nil {
				return nil, err
			}
			out = append(out, cus)
		}
		subs, err := api.CustomerSubscriptions(ctx, r.ObjectID, r.Account)
		if err != nil {
			return nil, err
		}
		for _, obj := range subs {
			ev, err := snapshot(r, repair.ObjectSubscription, stripeapi.IDOf(obj), obj, now())
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
		}
		return out, nil
	case repair.ObjectCheckoutSession:
		cs, err := read(repair.ObjectCheckoutSession, r.ObjectID)
		if err != nil {
			return nil, err
		}
		out := []stripeevent.Event{cs}
		d, err := subscription.Decode(cs)
		if err != nil || d.Checkout == nil || d.Checkout.SubscriptionID == "" {
			return out, nil // an odd session is stored as it is; the derivation reports it
		}
		sub, err := read(repair.ObjectSubscription, d.Checkout.SubscriptionID)
		if err != nil {
			return nil, err
		}
		more, err := withCustomer(sub)
		return append(more, out...), err
	case repair.ObjectEntitlementSummary:
		ents, err := api.ActiveEntitlements(ctx, r.ObjectID, r.Account)
		if err != nil {
			return nil, err
		}
		obj, err := json.Marshal(map[string]any{
			"object": repair.ObjectEntitlementSummary, "customer": r.ObjectID, "livemode": r.Livemode,
			"entitlements": map[string]any{"object": "list", "data": ents, "has_more": false,
				"url": "/v1/customer/" + r.ObjectID + "/entitlements"},
		})
		if err != nil {
			return nil, err
		}
		ev, err := snapshot(r, repair.ObjectEntitlementSummary, r.ObjectID, obj, now())
		return []stripeevent.Event{ev}, err
	}
	return nil, fmt.Errorf("repair %d: %w: %s", r.ID, errNotDerived, r.ObjectType)
}

// errNotDerived is wrapped by snapshots for an object Tollgate derives nothing from (an event
// generation failure of an invoice or a payment intent, say): the subscription events it matters
// to carry their own state.
var errNotDerived = errors.New("not an object the derivation reads")

// Metrics are the repairs' series on /metrics.
type Metrics struct {
	Open       *prometheus.GaugeVec
	done       *prometheus.CounterVec
	Incomplete prometheus.Gauge
}

func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		Open: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_processor_repairs_open",
			Help: "Repairs waiting to read their object from the Stripe API (all of them while STRIPE_API_KEY is unset), by object type.",
		}, []string{"object"}),
		done: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_processor_repairs_total",
			Help: "Repair attempts, by outcome: applied (snapshots published), not_found (Stripe has no such object), not_derived (an object the derivation does not read), failed (retried).",
		}, []string{"outcome"}),
		Incomplete: f.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_processor_entitlement_summaries_incomplete",
			Help: "Customers whose latest entitlement summary had has_more and is not yet completed from the API (needs STRIPE_API_KEY).",
		}),
	}
}

// Repairer does the open repairs: with an API, it reads their objects, publishes their
// snapshot events into the stream (the one apply path: the consumer stores and derives them)
// and closes them; without one it only counts and logs them, keeping every one.
type Repairer struct {
	DB      repairDB
	API     ObjectReader // nil without STRIPE_API_KEY
	JS      stream.Publisher
	Log     *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
	warned  int // the open count last logged without a key
}

// repairDB is what the repairer needs of Postgres.
type repairDB interface {
	repair.Querier
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Loop does the open repairs every `every` until ctx is done.
func (r *Repairer) Loop(ctx context.Context, every time.Duration) {
	service.Every(ctx, every, func(ctx context.Context) {
		if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.Log.Warn("repairs", "error", err)
		}
	})
}

// RunOnce counts the open repairs and, with an API, does up to repairBatch of them; it returns
// how many it closed.
func (r *Repairer) RunOnce(ctx context.Context) (int, error) {
	closed := 0
	if r.API != nil {
		n, err := r.batch(ctx)
		closed = n
		if err != nil {
			return closed, err
		}
	}
	open, err := repair.CountOpen(ctx, r.DB)
	if err != nil {
		return closed, err
	}
	total := 0
	r.Metrics.Open.Reset()
	for typ, n := range open {
		r.Metrics.Open.WithLabelValues(typ).Set(float64(n))
		total += n
	}
	r.Metrics.Incomplete.Set(float64(open[repair.ObjectEntitlementSummary]))
	if r.API == nil && total != r.warned {
		r.warned = total
		if total > 0 {
			r.Log.Warn("repairs are waiting for STRIPE_API_KEY: thin events, event generation failures and entitlement summaries with has_more need their objects read from the Stripe API; they are kept and done once a key is set",
				"open", total, "by_object", open)
		}
	}
	return closed, nil
}

// batch claims open repairs and does each: snapshots published, then closed, in the claim's
// transaction. A repair that fails stays open with its error, for the next round.
func (r *Repairer) batch(ctx context.Context) (int, error) {
	tx, err := r.DB.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("repairs: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	claimed, err := repair.Claim(ctx, tx, repairBatch)
	if err != nil || len(claimed) == 0 {
		return 0, err
	}
	closed := 0
	for _, rp := range claimed {
		outcome, err := r.do(ctx, rp)
		switch {
		case err != nil:
			r.Metrics.done.WithLabelValues("failed").Inc()
			r.Log.Warn("repair failed; retrying later", "object", rp.ObjectType, "id", rp.ObjectID, "event", rp.SourceEventID, "error", err)
			if err := repair.Failed(ctx, tx, rp.ID, err); err != nil {
				return closed, err
			}
		default:
			r.Metrics.done.WithLabelValues(outcome).Inc()
			// WARNING: closed only after every snapshot was acknowledged by JetStream (do
			// returned): closing first would lose the repair if the publish then failed.
			if err := repair.Done(ctx, tx, rp.ID, outcome); err != nil {
				return closed, err
			}
			closed++
			r.Log.Info("repaired", "object", rp.ObjectType, "id", rp.ObjectID, "event", rp.SourceEventID, "reason", rp.Reason, "outcome", outcome)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("repairs: commit: %w", err)
	}
	return closed, nil
}

// do reads and publishes one repair's snapshots; its outcome is "applied" or "not_found".
func (r *Repairer) do(ctx context.Context, rp repair.Repair) (string, error) {
	evs, err := Snapshots(ctx, r.API, rp, r.Now)
	switch {
	case errors.Is(err, stripeapi.ErrObjectNotFound):
		return "not_found", nil
	case errors.Is(err, errNotDerived):
		return "not_derived", nil
	case err != nil:
		return "", err
	}
	for _, ev := range evs {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), config.DefaultPublishTimeout)
		_, err := stream.Publish(pctx, r.JS, ev)
		cancel()
		if err != nil {
			return "", err
		}
	}
	return "applied", nil
}
