package subscription_test

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"reflect"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// This file builds full, Stripe-shaped event payloads (pretty-printed like Stripe sends them, with
// the fields real objects carry) so that tests and benchmarks exercise Decode on realistic JSON.
// previous_attributes are computed the way Stripe computes them: for each top-level field that
// changed, its old value; nested objects only with their changed members (null for members that
// did not exist), arrays whole.

const (
	apiOld    = "2020-03-02" // the version of the captured fixtures in ../testdata/stripe-events
	apiV2024  = "2024-06-20"
	apiBasil  = "2025-03-31.basil"  // current_period_* moved to subscription items
	apiClover = "2025-09-30.clover" // billing_mode object; customer_account only from 2025-12-15.clover
	apiEndive = "2026-11-18.endive" // the newest; rendered as the newest spec at hand (2026-07-29.dahlia)
	day       = int64(86400)
	month     = 30 * day
	t0        = int64(1750000000) // 2025-06-15T15:06:40Z
)

type item struct {
	id, price, product string
	amount             int64
	quantity           int64 // 0 renders as 1
	trialOffer         *trialOffer
}

// trialOffer is an item's current_trial (Trial Offers, 2026-09-30.endive).
type trialOffer struct {
	id         string
	start, end int64
}

func (it item) qty() int64 {
	if it.quantity == 0 {
		return 1
	}
	return it.quantity
}

type pause struct {
	behavior  string
	resumesAt int64
}

// sub describes a subscription's state; object renders it for an API version.
type sub struct {
	id, customer, status                     string
	items                                    []item
	created, periodStart, periodEnd          int64
	trialStart, trialEnd, endedAt, cancelAt  int64
	canceledAt                               int64
	cancelAtPeriodEnd                        bool
	pause                                    *pause
	latestInvoice                            string
	metadata                                 map[string]string
	priceAsID, productExpanded, legacyPlanID bool // shape variants of items
}

func nullable(v int64) any {
	if v == 0 {
		return nil
	}
	return v
}

func nullableString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func metadataObject(md map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range md {
		out[k] = v
	}
	return out
}

func priceObject(it item, productExpanded bool) map[string]any {
	var product any = it.product
	if productExpanded {
		product = map[string]any{
			"id": it.product, "object": "product", "active": true, "created": int64(1690000000),
			"default_price": it.price, "description": nil, "images": []any{}, "livemode": false,
			"metadata": map[string]any{}, "name": "Product " + it.product, "tax_code": nil,
			"type": "service", "updated": int64(1690000000), "url": nil,
		}
	}
	return map[string]any{
		"id": it.price, "object": "price", "active": true, "billing_scheme": "per_unit",
		"created": int64(1690000000), "currency": "usd", "custom_unit_amount": nil, "livemode": false,
		"lookup_key": nil, "metadata": map[string]any{}, "nickname": nil, "product": product,
		"recurring": map[string]any{
			"aggregate_usage": nil, "interval": "month", "interval_count": int64(1), "meter": nil,
			"trial_period_days": nil, "usage_type": "licensed",
		},
		"tax_behavior": "unspecified", "tiers_mode": nil, "transform_quantity": nil, "type": "recurring",
		"unit_amount": it.amount, "unit_amount_decimal": strconv.FormatInt(it.amount, 10),
	}
}

func planObject(it item) map[string]any {
	return map[string]any{
		"id": it.price, "object": "plan", "active": true, "aggregate_usage": nil, "amount": it.amount,
		"amount_decimal": strconv.FormatInt(it.amount, 10), "billing_scheme": "per_unit",
		"created": int64(1690000000), "currency": "usd", "interval": "month", "interval_count": int64(1),
		"livemode": false, "metadata": map[string]any{}, "meter": nil, "nickname": nil,
		"product": it.product, "tiers_mode": nil, "transform_usage": nil, "trial_period_days": nil,
		"usage_type": "licensed",
	}
}

func (s sub) object(api string) map[string]any {
	basil := api >= "2025-03-31"
	items := make([]any, 0, len(s.items))
	for _, it := range s.items {
		o := map[string]any{
			"id": it.id, "object": "subscription_item", "billing_thresholds": nil, "created": s.created,
			"discounts": []any{}, "metadata": map[string]any{}, "quantity": it.qty(),
			"subscription": s.id, "tax_rates": []any{},
		}
		if api >= "2026-09-30" {
			o["current_trial"] = nil
			if t := it.trialOffer; t != nil {
				o["current_trial"] = map[string]any{"trial_offer": t.id, "start_date": t.start, "end_date": t.end}
			}
		}
		if s.priceAsID {
			o["price"] = it.price
		} else {
			o["price"] = priceObject(it, s.productExpanded)
		}
		if api < "2024-01-01" || s.legacyPlanID {
			o["plan"] = planObject(it)
		}
		if basil {
			o["current_period_start"] = nullable(s.periodStart)
			o["current_period_end"] = nullable(s.periodEnd)
		}
		items = append(items, o)
	}
	var pauseCollection any
	if s.pause != nil {
		pauseCollection = map[string]any{"behavior": s.pause.behavior, "resumes_at": nullable(s.pause.resumesAt)}
	}
	o := map[string]any{
		"id": s.id, "object": "subscription", "application": nil, "application_fee_percent": nil,
		"automatic_tax":        map[string]any{"disabled_reason": nil, "enabled": false, "liability": nil},
		"billing_cycle_anchor": s.created, "billing_cycle_anchor_config": nil,
		"billing_thresholds": nil, "cancel_at": nullable(s.cancelAt),
		"cancel_at_period_end": s.cancelAtPeriodEnd, "canceled_at": nullable(s.canceledAt),
		"cancellation_details": map[string]any{"comment": nil, "feedback": nil, "reason": nil},
		"collection_method":    "charge_automatically", "created": s.created, "currency": "usd",
		"customer": s.customer, "days_until_due": nil, "default_payment_method": "pm_1Q0PsIJvEtkwdCNYMSaVuRz6",
		"default_source": nil, "default_tax_rates": []any{}, "description": nil, "discounts": []any{},
		"ended_at":         nullable(s.endedAt),
		"invoice_settings": map[string]any{"account_tax_ids": nil, "issuer": map[string]any{"type": "self"}},
		"items": map[string]any{
			"object": "list", "data": items, "has_more": false, "total_count": int64(len(items)),
			"url": "/v1/subscription_items?subscription=" + s.id,
		},
		"latest_invoice": nullableString(s.latestInvoice), "livemode": false,
		"metadata": metadataObject(s.metadata), "next_pending_invoice_item_invoice": nil,
		"on_behalf_of": nil, "pause_collection": pauseCollection,
		"payment_settings": map[string]any{
			"payment_method_options": map[string]any{"card": map[string]any{"network": nil, "request_three_d_secure": "automatic"}},
			"payment_method_types":   []any{"card"}, "save_default_payment_method": "off",
		},
		"pending_invoice_item_interval": nil, "pending_setup_intent": nil, "pending_update": nil,
		"schedule": nil, "start_date": s.created, "status": s.status, "test_clock": nil,
		"transfer_data": nil, "trial_end": nullable(s.trialEnd),
		"trial_settings": map[string]any{"end_behavior": map[string]any{"missing_payment_method": "create_invoice"}},
		"trial_start":    nullable(s.trialStart),
	}
	if !basil {
		o["current_period_start"] = nullable(s.periodStart)
		o["current_period_end"] = nullable(s.periodEnd)
	}
	// The shapes of later versions, which Decode must skip, as stripe/openapi's spec has them:
	// billing_mode an object (from 2025-06-30.basil), customer_account (from
	// 2025-12-15.clover), discounts as ids (expandable). billing_cycle_anchor stays an integer
	// on the object in every spec (endive's object form is the update and resume parameter's).
	if api >= "2025-06-30" {
		o["billing_mode"] = map[string]any{"type": "flexible", "flexible": map[string]any{"proration_discounts": "included"}, "updated_at": s.created}
	}
	if api >= "2025-12-15" {
		o["customer_account"] = nil
	}
	if basil {
		o["discounts"] = []any{"di_1Gen"}
	}
	if len(s.items) == 1 && api < "2025-03-31" {
		o["plan"] = planObject(s.items[0])
		o["quantity"] = s.items[0].qty()
	}
	return o
}

func customerObject(id string, created int64, md map[string]string) map[string]any {
	return map[string]any{
		"id": id, "object": "customer", "address": nil, "balance": int64(0), "created": created,
		"currency": "usd", "default_source": nil, "delinquent": false, "description": nil,
		"discount": nil, "email": "jenny.rosen@example.com", "invoice_prefix": "7D1E2A3B",
		"invoice_settings": map[string]any{
			"custom_fields": nil, "default_payment_method": nil, "footer": nil, "rendering_options": nil,
		},
		"livemode": false, "metadata": metadataObject(md), "name": "Jenny Rosen",
		"next_invoice_sequence": int64(1), "phone": nil, "preferred_locales": []any{}, "shipping": nil,
		"tax_exempt": "none", "test_clock": nil,
	}
}

// previousAttributes is Stripe's previous_attributes for a change from old to cur.
func previousAttributes(old, cur map[string]any) map[string]any {
	prev := map[string]any{}
	for k, ov := range old {
		cv, ok := cur[k]
		if ok && reflect.DeepEqual(ov, cv) {
			continue
		}
		om, oldIsObject := ov.(map[string]any)
		cm, curIsObject := cv.(map[string]any)
		if oldIsObject && curIsObject {
			if d := previousAttributes(om, cm); len(d) > 0 {
				prev[k] = d
			}
			continue
		}
		prev[k] = ov
	}
	for k := range cur {
		if _, ok := old[k]; !ok {
			prev[k] = nil
		}
	}
	return prev
}

// envelope is the event around object as Stripe sends it (stripetest builds it).
func (h *history) envelope(id, typ string, created int64, object, prev map[string]any) []byte {
	h.tb.Helper()
	return stripetest.Event{ID: id, Type: typ, Created: created, APIVersion: h.api, Object: object, PreviousAttributes: prev}.JSON(h.tb)
}

// history builds the raw events of one customer, remembering each object's last state so that
// updates carry Stripe's previous_attributes.
type history struct {
	tb        testing.TB
	customer  string
	api       string
	seq       int
	subs      map[string]map[string]any
	cust      map[string]any
	summary   []string
	raws      [][]byte
	templates map[string]map[string]any // captured objects by fixture name, read once
}

// template is a copy of the data.object of a captured fixture (top-level fields may be changed).
func (h *history) template(t testing.TB, name string) map[string]any {
	t.Helper()
	if o, ok := h.templates[name]; ok {
		return maps.Clone(o)
	}
	var data struct {
		Object map[string]any `json:"object"`
	}
	raw := stripetest.Fixture(t, name)
	var ev struct {
		Data json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(raw, &ev))
	if ev.Data != nil { // an event; checkout.session.completed.data.json is only its data
		raw = ev.Data
	}
	require.NoError(t, json.Unmarshal(raw, &data))
	o := data.Object
	if h.templates == nil {
		h.templates = map[string]map[string]any{}
	}
	h.templates[name] = o
	return maps.Clone(o)
}

func newHistory(tb testing.TB, customer, api string) *history {
	return &history{tb: tb, customer: customer, api: api, subs: map[string]map[string]any{}}
}

// eventID gives ids that, like Stripe's, do not sort in creation order.
func (h *history) eventID() string {
	h.seq++
	f := fnv.New64a()
	_, _ = fmt.Fprintf(f, "%s/%d", h.customer, h.seq) // a hash never fails to write
	return "evt_1" + strconv.FormatUint(f.Sum64(), 36)
}

func (h *history) add(raw []byte) { h.raws = append(h.raws, raw) }

func (h *history) customerCreated(at int64, md map[string]string) {
	h.cust = customerObject(h.customer, at, md)
	h.add(h.envelope(h.eventID(), "customer.created", at, h.cust, nil))
}

func (h *history) customerUpdated(at int64, md map[string]string) {
	old := h.cust
	if old == nil {
		old = customerObject(h.customer, at-day, nil)
	}
	cur := maps.Clone(old)
	cur["metadata"] = metadataObject(md)
	h.cust = cur
	h.add(h.envelope(h.eventID(), "customer.updated", at, cur, previousAttributes(old, cur)))
}

func (h *history) customerDeleted(at int64) {
	if h.cust == nil {
		h.cust = customerObject(h.customer, at-day, nil)
	}
	h.add(h.envelope(h.eventID(), "customer.deleted", at, h.cust, nil))
}

// subscription emits a customer.subscription.* event with s as its object; updates carry
// previous_attributes relative to the subscription's previous event.
func (h *history) subscription(at int64, typ string, s sub) {
	if s.customer == "" {
		s.customer = h.customer
	}
	cur := s.object(h.api)
	var prev map[string]any
	if old, ok := h.subs[s.id]; ok && typ == "customer.subscription.updated" {
		prev = previousAttributes(old, cur)
	}
	h.subs[s.id] = cur
	h.add(h.envelope(h.eventID(), typ, at, cur, prev))
}

func (h *history) created(at int64, s sub) { h.subscription(at, "customer.subscription.created", s) }
func (h *history) updated(at int64, s sub) { h.subscription(at, "customer.subscription.updated", s) }
func (h *history) deleted(at int64, s sub) { h.subscription(at, "customer.subscription.deleted", s) }

// checkout emits a completed Checkout Session: the captured fixture with this history's ids.
func (h *history) checkout(t testing.TB, at int64, typ, session, clientReferenceID, subscriptionID, mode string) {
	t.Helper()
	o := h.template(t, "checkout.session.completed.data.json")
	o["id"], o["customer"], o["subscription"], o["mode"] = session, h.customer, nullableString(subscriptionID), mode
	o["client_reference_id"] = nullableString(clientReferenceID)
	o["created"], o["expires_at"] = at-60, at+day
	h.add(h.envelope(h.eventID(), typ, at, o, nil))
}

func (h *history) entitlementSummary(at int64, lookupKeys ...string) {
	obj := func(keys []string) map[string]any {
		data := []any{}
		for i, k := range keys {
			data = append(data, map[string]any{
				"id": fmt.Sprintf("ent_test_%d%s", i, k), "object": "entitlements.active_entitlement",
				"feature": "feat_test_" + k, "livemode": false, "lookup_key": k,
			})
		}
		return map[string]any{"object": "list", "data": data, "has_more": false,
			"url": "/v1/customer/" + h.customer + "/entitlements"}
	}
	cur := map[string]any{"object": "entitlements.active_entitlement_summary", "customer": h.customer,
		"entitlements": obj(lookupKeys), "livemode": false}
	old := map[string]any{"object": "entitlements.active_entitlement_summary", "customer": h.customer,
		"entitlements": obj(h.summary), "livemode": false}
	h.summary = lookupKeys
	h.add(h.envelope(h.eventID(), "entitlements.active_entitlement_summary.updated", at, cur,
		previousAttributes(old, cur)))
}

// invoice emits an invoice event (which the derivation only counts): the captured invoice.paid
// object with this history's ids.
func (h *history) invoice(t testing.TB, at int64, typ, invoiceID, subscriptionID string) {
	t.Helper()
	o := h.template(t, "invoice.paid.json")
	o["id"], o["customer"], o["subscription"], o["created"] = invoiceID, h.customer, subscriptionID, at
	h.add(h.envelope(h.eventID(), typ, at, o, nil))
}

// decodeAll parses and decodes raw payloads.
func decodeAll(t testing.TB, raws [][]byte) []subscription.Event {
	t.Helper()
	events := make([]subscription.Event, 0, len(raws))
	for _, raw := range raws {
		pe, err := stripeevent.Parse(raw)
		require.NoError(t, err)
		ev, err := subscription.Decode(pe)
		require.NoError(t, err, "decode %s", pe.Type)
		events = append(events, ev)
	}
	return events
}
