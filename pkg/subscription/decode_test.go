package subscription_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// parse parses one raw payload for Decode.
func parse(t *testing.T, raw []byte) stripeevent.Event {
	t.Helper()
	pe, err := stripeevent.Parse(raw)
	require.NoError(t, err)
	return pe
}

// wrapCheckout turns checkout.session.completed.data.json ({"object": ...}) into an event.
func wrapCheckout(t *testing.T, id, typ string, created int64) []byte {
	t.Helper()
	var data map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(stripetest.Fixture(t, "checkout.session.completed.data.json"), &data))
	b, err := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "created": created,
		"livemode": false, "api_version": apiOld, "data": data})
	require.NoError(t, err)
	return b
}

// rawEvent builds an envelope around an object given as JSON text.
func rawEvent(typ, object string) []byte {
	return []byte(`{"id":"evt_1T","object":"event","type":"` + typ + `","created":1700000000,"data":{"object":` + object + `}}`)
}

func TestDecodeFixtures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  func(t *testing.T) []byte
		want subscription.Event
	}{
		{
			name: "customer.subscription.created, 2020-03-02, two items of one price",
			raw:  func(t *testing.T) []byte { return stripetest.Fixture(t, "customer.subscription.created.json") },
			want: subscription.Event{ID: "evt_1J02NfJDPojXS6LNawmt1X8q", Type: "customer.subscription.created",
				Created: 1623148918, CustomerID: "cus_IhGfebO16cMIGN",
				Subscription: &subscription.SubscriptionObject{ID: "sub_JdIzvfy6o5GZRd", CustomerID: "cus_IhGfebO16cMIGN",
					Status: "active", PriceIDs: []string{"price_1IDQm5JDPojXS6LNM31hxKzp"},
					ProductIDs: []string{"prod_Ip4vqwv3EJ7Mi0"}, CurrentPeriodEnd: 1625740918}},
		},
		{
			name: "customer.subscription.deleted",
			raw:  func(t *testing.T) []byte { return stripetest.Fixture(t, "customer.subscription.deleted.json") },
			want: subscription.Event{ID: "evt_1J02QdJDPojXS6LNnOJB09Xb", Type: "customer.subscription.deleted",
				Created: 1623149102, CustomerID: "cus_IhGfebO16cMIGN",
				Subscription: &subscription.SubscriptionObject{ID: "sub_JdIzvfy6o5GZRd", CustomerID: "cus_IhGfebO16cMIGN",
					Status: "canceled", PriceIDs: []string{"price_1IDQm5JDPojXS6LNM31hxKzp"},
					ProductIDs: []string{"prod_Ip4vqwv3EJ7Mi0"}, CurrentPeriodEnd: 1625740918, EndedAt: 1623149102}},
		},
		{
			name: "entitlement summary",
			raw: func(t *testing.T) []byte {
				return stripetest.Fixture(t, "entitlements.active_entitlement_summary.updated.json")
			},
			want: subscription.Event{ID: "evt_1RqDanBRSrwpzKxHOnFoInVh", Type: "entitlements.active_entitlement_summary.updated",
				Created: 1753795761, CustomerID: "cus_Sll319ReSxCmEi",
				EntitlementSummary: &subscription.EntitlementSummary{LookupKeys: []string{"journeys"}}},
		},
		{
			name: "invoice.paid is only counted",
			raw:  func(t *testing.T) []byte { return stripetest.Fixture(t, "invoice.paid.json") },
			want: subscription.Event{ID: "evt_1KJrGtJDPojXS6LN15fcthM3", Type: "invoice.paid", Created: 1642649111,
				CustomerID: "cus_JsuO3bmrj0QlAw"},
		},
		{
			name: "checkout.session.completed without client_reference_id",
			raw: func(t *testing.T) []byte {
				return wrapCheckout(t, "evt_1Checkout", "checkout.session.completed", 1658353296)
			},
			want: subscription.Event{ID: "evt_1Checkout", Type: "checkout.session.completed", Created: 1658353296,
				CustomerID: "cus_M5wW9RPFk9xNZ5",
				Checkout: &subscription.CheckoutSession{ID: "cs_test_a1UejXx8ebIdTzFolicVypUAZpOBVkoQKDbaarXoPlPVtj8p0zujPEEhjT",
					SubscriptionID: "sub_1LNkeSKXBGcbgpbZ7jMqOPSi"}},
		},
		{
			name: "checkout.session.expired is ignored",
			raw: func(t *testing.T) []byte {
				return wrapCheckout(t, "evt_1Expired", "checkout.session.expired", 1658353296)
			},
			want: subscription.Event{ID: "evt_1Expired", Type: "checkout.session.expired", Created: 1658353296,
				CustomerID: "cus_M5wW9RPFk9xNZ5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := subscription.Decode(parse(t, tt.raw(t)))
			require.NoError(t, err)
			require.Equal(t, project(tt.want), project(got), "facts")
			require.Equal(t, tt.want.ID, got.ID)
			require.Equal(t, tt.want.Type, got.Type)
			require.Equal(t, tt.want.Created, got.Created)
			require.Equal(t, tt.want.CustomerID, got.CustomerID)
		})
	}
}

func TestDecodeShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, object string
		want              decoded
	}{
		{
			name: "basil: period on items, the latest wins",
			typ:  "customer.subscription.updated",
			object: `{"id":"sub_1","customer":"cus_1","status":"active","items":{"object":"list","data":[
				{"price":{"id":"price_b","product":"prod_1"},"current_period_end":200},
				{"price":{"id":"price_a","product":"prod_1"},"current_period_end":300}]}}`,
			want: decoded{Subscription: &subscription.SubscriptionObject{ID: "sub_1", CustomerID: "cus_1", Status: "active",
				PriceIDs: []string{"price_a", "price_b"}, ProductIDs: []string{"prod_1"}, CurrentPeriodEnd: 300}},
		},
		{
			name: "the subscription's own period wins over its items'",
			typ:  "customer.subscription.created",
			object: `{"id":"sub_1","customer":"cus_1","status":"trialing","current_period_end":100,"trial_end":150,
				"items":{"data":[{"price":"price_x","current_period_end":300}]}}`,
			want: decoded{Subscription: &subscription.SubscriptionObject{ID: "sub_1", CustomerID: "cus_1", Status: "trialing",
				PriceIDs: []string{"price_x"}, CurrentPeriodEnd: 100, TrialEnd: 150}},
		},
		{
			name: "legacy plan only, expanded customer and product",
			typ:  "customer.subscription.updated",
			object: `{"id":"sub_1","customer":{"id":"cus_1","object":"customer"},"status":"past_due","cancel_at_period_end":true,
				"items":{"data":[{"plan":{"id":"gold","product":{"id":"prod_gold","name":"Gold"}}}]},
				"pause_collection":{"behavior":"mark_uncollectible","resumes_at":null}}`,
			want: decoded{Subscription: &subscription.SubscriptionObject{ID: "sub_1", CustomerID: "cus_1", Status: "past_due",
				PriceIDs: []string{"gold"}, ProductIDs: []string{"prod_gold"}, CancelAtPeriodEnd: true,
				Paused: true, PauseBehavior: "mark_uncollectible"}},
		},
		{
			name:   "customer metadata with escapes",
			typ:    "customer.updated",
			object: `{"id":"cus_1","object":"customer","metadata":{"user_id":"u_\u00e9\"x","empty":""}}`,
			want: decoded{Customer: &subscription.CustomerObject{ID: "cus_1",
				Metadata: map[string]string{"user_id": "u_é\"x", "empty": ""}}},
		},
		{
			name:   "customer without metadata",
			typ:    "customer.deleted",
			object: `{"id":"cus_1","object":"customer","deleted":true}`,
			want:   decoded{Customer: &subscription.CustomerObject{ID: "cus_1", Deleted: true}},
		},
		{
			name:   "checkout in payment mode is ignored",
			typ:    "checkout.session.completed",
			object: `{"id":"cs_1","customer":"cus_1","mode":"payment","client_reference_id":"u_1"}`,
		},
		{
			name:   "async checkout in subscription mode",
			typ:    "checkout.session.async_payment_succeeded",
			object: `{"id":"cs_1","customer":"cus_1","mode":"subscription","client_reference_id":"u_1","subscription":"sub_9"}`,
			want:   decoded{Checkout: &subscription.CheckoutSession{ID: "cs_1", ClientReferenceID: "u_1", SubscriptionID: "sub_9"}},
		},
		{
			name:   "empty entitlement summary",
			typ:    "entitlements.active_entitlement_summary.updated",
			object: `{"object":"entitlements.active_entitlement_summary","customer":"cus_1","entitlements":{"data":[]}}`,
			want:   decoded{Summary: &subscription.EntitlementSummary{}},
		},
		{
			name:   "customer.subscription lookalikes are ignored",
			typ:    "customer.discount.created",
			object: `{"id":"di_1","customer":"cus_1","status":42}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := subscription.Decode(parse(t, rawEvent(tt.typ, tt.object)))
			require.NoError(t, err)
			require.Equal(t, tt.want, project(got))
		})
	}
}

func TestDecodeUndecodable(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, typ, object string }{
		{"subscription without id", "customer.subscription.updated", `{"customer":"cus_1","status":"active"}`},
		{"subscription without status", "customer.subscription.created", `{"id":"sub_1","customer":"cus_1"}`},
		{"status not a string", "customer.subscription.updated", `{"id":"sub_1","customer":"cus_1","status":3}`},
		{"period not an integer", "customer.subscription.updated", `{"id":"sub_1","customer":"cus_1","status":"active","current_period_end":"soon"}`},
		{"fractional timestamp", "customer.subscription.updated", `{"id":"sub_1","customer":"cus_1","status":"active","trial_end":1.5}`},
		{"items not a list", "customer.subscription.updated", `{"id":"sub_1","customer":"cus_1","status":"active","items":[1]}`},
		{"product neither id nor object", "customer.subscription.updated", `{"id":"sub_1","customer":"cus_1","status":"active","items":{"data":[{"price":{"id":"p","product":7}}]}}`},
		{"pause_collection a string", "customer.subscription.paused", `{"id":"sub_1","customer":"cus_1","status":"active","pause_collection":"yes"}`},
		{"customer without id", "customer.updated", `{"object":"customer","metadata":{}}`},
		{"metadata value a number", "customer.created", `{"id":"cus_1","metadata":{"user_id":42}}`},
		{"checkout without id", "checkout.session.completed", `{"customer":"cus_1","mode":"subscription"}`},
		{"summary without entitlements", "entitlements.active_entitlement_summary.updated", `{"customer":"cus_1"}`},
		{"lookup key a number", "entitlements.active_entitlement_summary.updated", `{"customer":"cus_1","entitlements":{"data":[{"lookup_key":1}]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := subscription.Decode(parse(t, rawEvent(tt.typ, tt.object)))
			require.ErrorIs(t, err, subscription.ErrUndecodable)
			require.ErrorContains(t, err, "evt_1T")
		})
	}
}

func TestDecodeBadPreviousAttributes(t *testing.T) {
	t.Parallel()
	raw := []byte(`{"id":"evt_1P","type":"customer.subscription.updated","created":1700000000,"data":{
		"object":{"id":"sub_1","customer":"cus_1","status":"active"},
		"previous_attributes":{"status":{"not":"a string"}}}}`)
	_, err := subscription.Decode(parse(t, raw))
	require.ErrorIs(t, err, subscription.ErrUndecodable)
	require.ErrorContains(t, err, "previous_attributes")
}

// TestDeriveCapturedPayloads derives the captured events of cus_IhGfebO16cMIGN, delivered with
// unrelated events of other customers.
func TestDeriveCapturedPayloads(t *testing.T) {
	t.Parallel()
	var events []subscription.Event
	for _, name := range []string{"customer.subscription.deleted.json", "invoice.paid.json",
		"customer.subscription.updated.json", "entitlements.active_entitlement_summary.updated.json",
		"customer.subscription.created.json"} {
		ev, err := subscription.Decode(parse(t, stripetest.Fixture(t, name)))
		require.NoError(t, err)
		events = append(events, ev)
	}
	rules := subscription.DefaultRules()
	st := subscription.Derive("cus_IhGfebO16cMIGN", events, rules)
	require.Equal(t, subscription.State{
		CustomerID: "cus_IhGfebO16cMIGN",
		Subscriptions: []subscription.Subscription{
			{ID: "sub_JLEPMp81LApOJl", CustomerID: "cus_IhGfebO16cMIGN", Status: "active",
				PriceIDs: []string{"price_1IDQm5JDPojXS6LNM31hxKzp"}, ProductIDs: []string{"prod_Ip4vqwv3EJ7Mi0"},
				Items:            []subscription.Item{{PriceID: "price_1IDQm5JDPojXS6LNM31hxKzp", ProductID: "prod_Ip4vqwv3EJ7Mi0", Quantity: 1}},
				CurrentPeriodEnd: unix(1621572344)},
			{ID: "sub_JdIzvfy6o5GZRd", CustomerID: "cus_IhGfebO16cMIGN", Status: "canceled",
				PriceIDs: []string{"price_1IDQm5JDPojXS6LNM31hxKzp"}, ProductIDs: []string{"prod_Ip4vqwv3EJ7Mi0"},
				Items:            []subscription.Item{{PriceID: "price_1IDQm5JDPojXS6LNM31hxKzp", ProductID: "prod_Ip4vqwv3EJ7Mi0", Quantity: 1}},
				CurrentPeriodEnd: unix(1625740918), EndedAt: unix(1623149102)},
		},
		LastEventID:      "evt_1J02QdJDPojXS6LNnOJB09Xb",
		LastEventCreated: 1623149102,
	}, st)
	require.Equal(t, subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium"}}, st.Entitlement(rules))

	other := subscription.Derive("cus_Sll319ReSxCmEi", events, rules)
	require.Equal(t, []string{"journeys"}, other.EntitlementFeatures)
	require.Equal(t, subscription.Entitlement{Status: "none", Features: []string{}}, other.Entitlement(rules),
		"an entitlement summary alone does not grant")
}

// ReadsObject must agree with Decode: for a type it does not read, the decoded event is the
// envelope alone, whatever the object holds; for a type it reads, the object matters.
func TestReadsObjectAgreesWithDecode(t *testing.T) {
	t.Parallel()
	envelopeOnly := func(ev stripeevent.Event) subscription.Event {
		return subscription.Event{ID: ev.ID, Type: ev.Type, Created: ev.Created, CustomerID: ev.CustomerID}
	}
	for _, name := range []string{"invoice.paid.json", "customer.subscription.created.json",
		"customer.subscription.updated.json", "customer.subscription.deleted.json",
		"entitlements.active_entitlement_summary.updated.json"} {
		ev := parse(t, stripetest.Fixture(t, name))
		got, err := subscription.Decode(ev)
		require.NoError(t, err, name)
		if subscription.ReadsObject(ev.Type) {
			require.NotEqual(t, envelopeOnly(ev), got, "%s: Decode reads the object", name)
		} else {
			require.Equal(t, envelopeOnly(ev), got, "%s: Decode keeps the envelope only", name)
		}
	}
	for _, typ := range []string{"invoice.paid", "invoice.payment_failed", "charge.succeeded",
		"payment_intent.succeeded", "product.created", "customer.source.created", "customer.discount.created"} {
		require.False(t, subscription.ReadsObject(typ), typ)
		got, err := subscription.Decode(parse(t, rawEvent(typ, `{"id":"x","object":"thing","customer":"cus_1","status":"active"}`)))
		require.NoError(t, err)
		require.Nil(t, got.Subscription)
		require.Nil(t, got.Customer)
		require.Nil(t, got.Checkout)
		require.Nil(t, got.EntitlementSummary)
	}
	for _, typ := range []string{"customer.created", "customer.updated", "customer.deleted",
		"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
		"customer.subscription.paused", "customer.subscription.resumed", "customer.subscription.trial_will_end",
		"customer.subscription.pending_update_applied", "customer.subscription.pending_update_expired",
		"checkout.session.completed", "checkout.session.async_payment_succeeded",
		"entitlements.active_entitlement_summary.updated"} {
		require.True(t, subscription.ReadsObject(typ), typ)
	}
}
