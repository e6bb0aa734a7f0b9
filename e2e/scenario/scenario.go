// Package scenario builds realistic Stripe event payloads for a customer's subscription
// lifecycle and signs them as Stripe does, for the demo, the load generators and the
// end-to-end tests. It is not test-only: `make demo` uses it.
package scenario

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// APIVersion is the API version the built events carry (a 2024 one, before basil moved
// current_period_end onto items).
const APIVersion = "2024-06-20"

// Customer is one Stripe customer of the app, and the ids its events use.
type Customer struct {
	ID     string // cus_...
	UserID string // the app's user id, in metadata["user_id"]
	SubID  string // sub_...
	Price  string // price_...
	Prod   string // prod_...
	// Quantity is the subscription item's quantity (seats); 0 means 1.
	Quantity int64
	seq      int
}

// NewCustomer names a customer and its subscription after n, so ids never clash between runs
// that use different prefixes.
func NewCustomer(prefix string, n int) *Customer {
	return &Customer{
		ID: fmt.Sprintf("cus_%s%d", prefix, n), UserID: fmt.Sprintf("u_%s%d", prefix, n),
		SubID: fmt.Sprintf("sub_%s%d", prefix, n), Price: "price_pro_monthly", Prod: "prod_pro",
	}
}

// Event is one built event: its id, type, created and JSON payload.
type Event struct {
	ID      string
	Type    string
	Created int64
	Payload []byte
}

// Step is a named event of a lifecycle, with the answer it should lead to.
type Step struct {
	Name        string
	Event       Event
	WantPremium bool
	WantStatus  string
}

// Lifecycle is the demo's sequence: customer with a user id, checkout, subscription created
// (incomplete) then active, then past_due, then canceled. Events are one second apart from start.
func (c *Customer) Lifecycle(start time.Time) []Step {
	t := start.Unix()
	return []Step{
		{"customer created with user id", c.CustomerCreated(t), false, "none"},
		{"checkout completed", c.CheckoutCompleted(t + 1), false, "none"},
		{"subscription created (incomplete)", c.SubscriptionEvent("customer.subscription.created", "incomplete", t+2, nil), false, "incomplete"},
		{"first invoice paid: active", c.SubscriptionEvent("customer.subscription.updated", "active", t+3, map[string]any{"status": "incomplete"}), true, "active"},
		{"renewal failed: past_due", c.SubscriptionEvent("customer.subscription.updated", "past_due", t+4, map[string]any{"status": "active"}), true, "past_due"},
		{"canceled", c.SubscriptionEvent("customer.subscription.deleted", "canceled", t+5, nil), false, "canceled"},
	}
}

func (c *Customer) nextID() string {
	c.seq++
	return fmt.Sprintf("evt_%s_%d", c.ID[4:], c.seq)
}

func envelope(id, typ string, created int64, object any, previous map[string]any) Event {
	data := map[string]any{"object": object}
	if previous != nil {
		data["previous_attributes"] = previous
	}
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": APIVersion, "created": created, "livemode": false,
		"pending_webhooks": 1, "request": map[string]any{"id": "req_" + id[4:], "idempotency_key": nil},
		"type": typ, "data": data,
	})
	if err != nil {
		panic(err) // maps of plain values always marshal
	}
	return Event{ID: id, Type: typ, Created: created, Payload: b}
}

// CustomerCreated is customer.created with metadata user_id.
func (c *Customer) CustomerCreated(created int64) Event {
	return envelope(c.nextID(), "customer.created", created, map[string]any{
		"id": c.ID, "object": "customer", "created": created, "email": c.UserID + "@example.com",
		"livemode": false, "metadata": map[string]any{"user_id": c.UserID}, "name": "Demo " + c.UserID,
		"currency": "usd", "delinquent": false, "invoice_prefix": "ABC123",
	}, nil)
}

// CheckoutCompleted is checkout.session.completed (mode subscription) naming the user.
func (c *Customer) CheckoutCompleted(created int64) Event {
	return envelope(c.nextID(), "checkout.session.completed", created, map[string]any{
		"id": "cs_test_" + c.ID[4:], "object": "checkout.session", "mode": "subscription", "status": "complete",
		"payment_status": "paid", "client_reference_id": c.UserID, "customer": c.ID, "subscription": c.SubID,
		"amount_total": 2000, "currency": "usd", "livemode": false, "created": created - 60,
		"metadata": map[string]any{},
	}, nil)
}

// SubscriptionEvent is a customer.subscription.* event with the subscription in status.
func (c *Customer) SubscriptionEvent(typ, status string, created int64, previous map[string]any) Event {
	periodStart := created - 60
	quantity := max(c.Quantity, 1)
	sub := map[string]any{
		"id": c.SubID, "object": "subscription", "customer": c.ID, "status": status, "created": periodStart,
		"current_period_start": periodStart, "current_period_end": periodStart + 30*24*3600,
		"cancel_at_period_end": false, "canceled_at": nil, "ended_at": nil, "trial_start": nil, "trial_end": nil,
		"pause_collection": nil, "livemode": false, "metadata": map[string]any{}, "collection_method": "charge_automatically",
		"items": map[string]any{"object": "list", "has_more": false, "data": []any{map[string]any{
			"id": "si_" + c.SubID[4:], "object": "subscription_item", "quantity": quantity, "subscription": c.SubID,
			"price": map[string]any{"id": c.Price, "object": "price", "product": c.Prod, "unit_amount": 2000,
				"currency": "usd", "recurring": map[string]any{"interval": "month", "interval_count": 1}},
		}}},
	}
	if status == "canceled" {
		sub["ended_at"], sub["canceled_at"] = created, created
	}
	return envelope(c.nextID(), typ, created, sub, previous)
}

// Sign returns the Stripe-Signature header for payload signed now with secret, exactly as
// Stripe computes it (stripe-go's webhook.GenerateTestSignedPayload).
func Sign(payload []byte, secret string) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: secret, Timestamp: time.Now(),
	}).Header
}
