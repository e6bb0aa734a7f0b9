package processortest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/stripetest"
)

// Kit builds realistic Stripe events for one test: the captured payloads of
// pkg/testdata/stripe-events (through stripetest), re-keyed to the test's customers, ids, prices
// and times. Event ids are unique within the kit.
type Kit struct {
	tb     testing.TB
	prefix string
	n      int
	fix    map[string]map[string]any
}

func NewKit(tb testing.TB, prefix string) *Kit {
	tb.Helper()
	k := &Kit{tb: tb, prefix: prefix, fix: map[string]map[string]any{}}
	for _, name := range []string{"customer.subscription.created.json", "invoice.paid.json", "checkout.session.completed.data.json"} {
		k.fix[name] = decodeJSON(tb, stripetest.Fixture(tb, name))
	}
	return k
}

func decodeJSON(tb testing.TB, raw []byte) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep Stripe's integers as they are
	var v map[string]any
	require.NoError(tb, dec.Decode(&v))
	return v
}

// fixture is a deep copy of a captured payload, safe to edit.
func (k *Kit) fixture(name string) map[string]any {
	b, err := json.Marshal(k.fix[name])
	require.NoError(k.tb, err)
	return decodeJSON(k.tb, b)
}

func (k *Kit) id() string {
	k.n++
	return fmt.Sprintf("evt_%s%06d", k.prefix, k.n)
}

func (k *Kit) encode(v map[string]any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	require.NoError(k.tb, err)
	return b
}

// customerObject is a Stripe customer as API version 2020-03-02 sends it.
func customerObject(id string, created int64, metadata map[string]any) map[string]any {
	return map[string]any{
		"id": id, "object": "customer", "address": nil, "balance": 0, "created": created, "currency": "usd",
		"default_source": nil, "delinquent": false, "description": nil, "discount": nil,
		"email": "jenny.rosen+" + id + "@example.com", "invoice_prefix": "A1B2C3D4",
		"invoice_settings": map[string]any{"custom_fields": nil, "default_payment_method": nil, "footer": nil},
		"livemode":         false, "metadata": metadata, "name": "Jenny Rosen", "next_invoice_sequence": 1, "phone": nil,
		"preferred_locales": []any{}, "shipping": nil, "tax_exempt": "none",
	}
}

func (k *Kit) CustomerCreated(customer string, at int64, userID string) []byte {
	md := map[string]any{}
	if userID != "" {
		md["user_id"] = userID
	}
	return stripetest.Event{ID: k.id(), Type: "customer.created", Created: at, APIVersion: "2020-03-02",
		Object: customerObject(customer, at, md)}.JSON(k.tb)
}

// CustomerUpdated moves the customer's user_id metadata from oldUser to newUser.
func (k *Kit) CustomerUpdated(customer string, at int64, oldUser, newUser string) []byte {
	return stripetest.Event{ID: k.id(), Type: "customer.updated", Created: at, APIVersion: "2020-03-02",
		Object:             customerObject(customer, at, map[string]any{"user_id": newUser}),
		PreviousAttributes: map[string]any{"metadata": map[string]any{"user_id": oldUser}}}.JSON(k.tb)
}

func (k *Kit) customerDeleted(customer string, at int64, userID string) []byte {
	return stripetest.Event{ID: k.id(), Type: "customer.deleted", Created: at, APIVersion: "2020-03-02",
		Object: customerObject(customer, at, map[string]any{"user_id": userID})}.JSON(k.tb)
}

// checkoutCompleted is the captured checkout session of a subscription, completed by userID.
func (k *Kit) checkoutCompleted(customer string, at int64, userID, sub string) []byte {
	obj := k.fixture("checkout.session.completed.data.json")["object"].(map[string]any)
	obj["id"] = "cs_test_" + customer + "_" + sub
	obj["customer"] = customer
	obj["client_reference_id"] = userID
	obj["subscription"] = sub
	obj["expires_at"] = at + 86400
	return stripetest.Event{ID: k.id(), Type: "checkout.session.completed", Created: at, APIVersion: "2020-03-02", Object: obj}.JSON(k.tb)
}

// Subscription is the captured subscription as an event of type typ, re-keyed. prev, when not
// nil, is data.previous_attributes.
func (k *Kit) Subscription(typ, customer, sub, status, price string, at int64, prev map[string]any) []byte {
	ev := k.fixture("customer.subscription.created.json")
	ev["id"], ev["type"], ev["created"] = k.id(), typ, at
	data := ev["data"].(map[string]any)
	obj := data["object"].(map[string]any)
	obj["id"], obj["customer"], obj["status"] = sub, customer, status
	obj["created"], obj["start_date"], obj["billing_cycle_anchor"] = at, at, at
	obj["current_period_start"], obj["current_period_end"] = at, at+30*86400
	obj["latest_invoice"] = "in_" + sub
	if status == "canceled" {
		obj["ended_at"], obj["canceled_at"] = at, at
	}
	items := obj["items"].(map[string]any)
	items["url"] = "/v1/subscription_items?subscription=" + sub
	for _, it := range items["data"].([]any) {
		item := it.(map[string]any)
		item["id"], item["subscription"] = "si_"+sub, sub
		item["price"].(map[string]any)["id"] = price
		item["plan"].(map[string]any)["id"] = price
	}
	obj["plan"].(map[string]any)["id"] = price
	if prev != nil {
		data["previous_attributes"] = prev
	}
	return k.encode(ev)
}

func (k *Kit) InvoicePaid(customer, sub string, at int64) []byte {
	ev := k.fixture("invoice.paid.json")
	ev["id"], ev["created"] = k.id(), at
	obj := ev["data"].(map[string]any)["object"].(map[string]any)
	obj["id"], obj["customer"], obj["subscription"] = "in_"+sub+fmt.Sprint(at), customer, sub
	return k.encode(ev)
}

// ProductUpdated is an event of no customer.
func (k *Kit) ProductUpdated(at int64) []byte {
	return stripetest.Event{ID: k.id(), Type: "product.updated", Created: at, APIVersion: "2020-03-02",
		Object:             map[string]any{"id": "prod_Ip4vqwv3EJ7Mi0", "object": "product", "active": true, "name": "Pro", "metadata": map[string]any{}},
		PreviousAttributes: map[string]any{"name": "Plus"}}.JSON(k.tb)
}

const T0 = int64(1_760_000_000) // 2025-10-09, a Thursday

// Signup is the realistic start of a paying customer: the customer with its user id, the
// checkout, the subscription created incomplete and made active by the first payment in the same
// second, and the paid invoice.
func (k *Kit) Signup(customer, user, sub, price string, at int64) [][]byte {
	return [][]byte{
		k.CustomerCreated(customer, at, user),
		k.checkoutCompleted(customer, at+40, user, sub),
		k.Subscription("customer.subscription.created", customer, sub, "incomplete", price, at+41, nil),
		k.Subscription("customer.subscription.updated", customer, sub, "active", price, at+41, map[string]any{"status": "incomplete"}),
		k.InvoicePaid(customer, sub, at+41),
	}
}

// Population is a varied set of customers: several customers per user, subscriptions that stay
// active, fall past_due, are canceled, start trialing, and customers that change user.
func (k *Kit) Population(customers int) [][]byte {
	var out [][]byte
	for i := range customers {
		c, u, s := fmt.Sprintf("cus_%s%04d", k.prefix, i), fmt.Sprintf("u_%s%03d", k.prefix, i/3), fmt.Sprintf("sub_%s%04d", k.prefix, i)
		at := T0 + int64(i)*60
		price := "price_basic"
		if i%2 == 1 {
			price = "price_pro"
		}
		out = append(out, k.Signup(c, u, s, price, at)...)
		switch i % 5 {
		case 1:
			out = append(out, k.Subscription("customer.subscription.updated", c, s, "past_due", price, at+31*86400, map[string]any{"status": "active"}))
		case 2:
			out = append(out,
				k.Subscription("customer.subscription.updated", c, s, "active", price, at+86400, map[string]any{"cancel_at_period_end": false}),
				k.Subscription("customer.subscription.deleted", c, s, "canceled", price, at+30*86400, nil))
			if i%10 == 7 {
				out = append(out, k.customerDeleted(c, at+31*86400, u))
			}
		case 3:
			s2 := s + "b"
			out = append(out,
				k.Subscription("customer.subscription.created", c, s2, "trialing", "price_team", at+2*86400, nil),
				k.InvoicePaid(c, s2, at+2*86400))
		case 4:
			out = append(out, k.CustomerUpdated(c, at+3*86400, u, fmt.Sprintf("u_%s%03d", k.prefix, (i+7)/3)))
		}
	}
	return out
}

// ShuffledWithDuplicates returns the events in a random order (fixed seed), some of them twice.
func ShuffledWithDuplicates(seed uint64, events [][]byte) [][]byte {
	r := rand.New(rand.NewPCG(seed, seed))
	out := append([][]byte(nil), events...)
	for i, e := range events {
		if i%4 == 0 {
			out = append(out, e)
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Edit decodes raw, lets fn change the envelope, and encodes it again.
func (k *Kit) Edit(raw []byte, fn func(ev, obj map[string]any)) []byte {
	ev := decodeJSON(k.tb, raw)
	fn(ev, ev["data"].(map[string]any)["object"].(map[string]any))
	return k.encode(ev)
}

// CancelAtPeriodEnd is the customer.subscription.updated of a customer asking to cancel.
func (k *Kit) CancelAtPeriodEnd(customer, sub, price string, at int64) []byte {
	raw := k.Subscription("customer.subscription.updated", customer, sub, "active", price, at,
		map[string]any{"cancel_at_period_end": false, "cancel_at": nil, "canceled_at": nil})
	return k.Edit(raw, func(_, obj map[string]any) {
		obj["cancel_at_period_end"], obj["cancel_at"], obj["canceled_at"] = true, at+29*86400, at
	})
}
