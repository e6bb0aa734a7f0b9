package stripeevent_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/internal/stripejson"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "stripe-events", name))
	require.NoError(t, err)
	return b
}

// wrap turns checkout.session.completed.data.json ({"object": ...}) into a full event envelope.
func wrap(t *testing.T, id, typ string, created int64, data []byte) []byte {
	t.Helper()
	var d map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &d))
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "type": typ, "created": created, "livemode": false,
		"api_version": "2024-06-20", "data": d,
	})
	require.NoError(t, err)
	return b
}

func TestParseFixtures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file   string
		raw          []byte
		wantID       string
		wantType     string
		wantCreated  int64
		wantCustomer string
		wantVersion  string
		wantPrevious bool
	}{
		{name: "subscription created", file: "customer.subscription.created.json",
			wantID: "evt_1J02NfJDPojXS6LNawmt1X8q", wantType: "customer.subscription.created",
			wantCreated: 1623148918, wantCustomer: "cus_IhGfebO16cMIGN", wantVersion: "2020-03-02"},
		{name: "subscription updated with previous attributes", file: "customer.subscription.updated.json",
			wantID: "evt_1IlavxJDPojXS6LNGNOrPWFQ", wantType: "customer.subscription.updated",
			wantCreated: 1619706820, wantCustomer: "cus_IhGfebO16cMIGN", wantVersion: "2020-03-02", wantPrevious: true},
		{name: "subscription deleted", file: "customer.subscription.deleted.json",
			wantType: "customer.subscription.deleted", wantCreated: 1623149102, wantCustomer: "cus_IhGfebO16cMIGN", wantVersion: "2020-03-02"},
		{name: "invoice paid", file: "invoice.paid.json",
			wantType: "invoice.paid", wantCreated: 1642649111, wantCustomer: "cus_JsuO3bmrj0QlAw", wantVersion: "2020-03-02"},
		{name: "entitlement summary", file: "entitlements.active_entitlement_summary.updated.json",
			wantType: "entitlements.active_entitlement_summary.updated", wantCreated: 1753795761,
			wantCustomer: "cus_Sll319ReSxCmEi", wantVersion: "2020-03-02", wantPrevious: true},
		{name: "checkout session wrapped", file: "checkout.session.completed.data.json",
			wantID: "evt_checkout", wantType: "checkout.session.completed", wantCreated: 1700000000,
			wantCustomer: "cus_M5wW9RPFk9xNZ5", wantVersion: "2024-06-20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw := fixture(t, tt.file)
			if tt.file == "checkout.session.completed.data.json" {
				raw = wrap(t, "evt_checkout", "checkout.session.completed", 1700000000, raw)
			}
			ev, err := stripeevent.Parse(raw)
			require.NoError(t, err)
			if tt.wantID != "" {
				require.Equal(t, tt.wantID, ev.ID)
			}
			require.Equal(t, tt.wantType, ev.Type)
			require.Equal(t, tt.wantCreated, ev.Created)
			require.Equal(t, tt.wantCustomer, ev.CustomerID)
			require.Equal(t, tt.wantVersion, ev.APIVersion)
			require.Equal(t, tt.wantPrevious, ev.PreviousAttributes != nil)
			require.Equal(t, raw, ev.Raw)
			require.NotEmpty(t, ev.Object)
		})
	}
}

func TestParseCustomerOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw, want string
	}{
		{"customer object is its own", `{"id":"evt_1","type":"customer.created","created":1,"data":{"object":{"id":"cus_1","object":"customer"}}}`, "cus_1"},
		{"customer.deleted", `{"id":"evt_1","type":"customer.deleted","created":1,"data":{"object":{"id":"cus_9","object":"customer","deleted":true}}}`, "cus_9"},
		{"expanded customer", `{"id":"evt_1","type":"invoice.paid","created":1,"data":{"object":{"id":"in_1","object":"invoice","customer":{"id":"cus_2","object":"customer"}}}}`, "cus_2"},
		{"payment intent", `{"id":"evt_1","type":"payment_intent.succeeded","created":1,"data":{"object":{"id":"pi_1","object":"payment_intent","customer":"cus_3"}}}`, "cus_3"},
		{"charge without customer", `{"id":"evt_1","type":"charge.succeeded","created":1,"data":{"object":{"id":"ch_1","object":"charge","customer":null}}}`, ""},
		{"catalog event", `{"id":"evt_1","type":"product.updated","created":1,"data":{"object":{"id":"prod_1","object":"product","name":"Pro"}}}`, ""},
		{"customer.subscription is not a customer", `{"id":"evt_1","type":"customer.subscription.paused","created":1,"data":{"object":{"id":"sub_1","object":"subscription","customer":"cus_4"}}}`, "cus_4"},
		{"2025 basil connect event", `{"id":"evt_1","object":"event","api_version":"2025-03-31.basil","account":"acct_1","type":"customer.subscription.updated","created":1743465600,"livemode":true,"data":{"object":{"id":"sub_1","object":"subscription","customer":"cus_5","items":{"data":[{"current_period_end":1746057600}]}}}}`, "cus_5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := stripeevent.Parse([]byte(tt.raw))
			require.NoError(t, err)
			require.Equal(t, tt.want, ev.CustomerID)
		})
	}
}

func TestParseEnvelopeFields(t *testing.T) {
	t.Parallel()
	ev, err := stripeevent.Parse([]byte(`{"id":"evt_1","object":"event","api_version":"2025-03-31.basil","account":"acct_1","type":"customer.created","created":1743465600,"livemode":true,"data":{"object":{"id":"cus_1","object":"customer"}}}`))
	require.NoError(t, err)
	require.Equal(t, "acct_1", ev.Account)
	require.True(t, ev.Livemode)
	require.Equal(t, "2025-03-31.basil", ev.APIVersion)
	require.Nil(t, ev.PreviousAttributes)
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, raw string }{
		{"not json", `nope`},
		{"array", `[1,2]`},
		{"no id", `{"type":"customer.created","created":1,"data":{"object":{}}}`},
		{"no type", `{"id":"evt_1","created":1,"data":{"object":{}}}`},
		{"no created", `{"id":"evt_1","type":"customer.created","data":{"object":{}}}`},
		{"created as string", `{"id":"evt_1","type":"customer.created","created":"1","data":{"object":{}}}`},
		{"no data", `{"id":"evt_1","type":"customer.created","created":1}`},
		{"object not an object", `{"id":"evt_1","type":"customer.created","created":1,"data":{"object":"x"}}`},
		{"customer neither id nor object", `{"id":"evt_1","type":"invoice.paid","created":1,"data":{"object":{"customer":12}}}`},
		{"id not a string", `{"id":5,"type":"customer.created","created":1,"data":{"object":{}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := stripeevent.Parse([]byte(tt.raw))
			require.ErrorIs(t, err, stripeevent.ErrInvalid)
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"customer.subscription.created.json", "invoice.paid.json", "entitlements.active_entitlement_summary.updated.json"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "stripe-events", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"evt_1","type":"x","created":1,"data":{"object":{"customer":{"id":"cus_1"}}}}`))
	for _, name := range []string{"v2/v2.core.health.event_generation_failure.resolved.json",
		"v2/v2.core.health.event_generation_failure.resolved.event.json", "v2/v1.customer.updated.thin.json"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "stripe-events", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"evt_1","type":"x","created":1,"data":{"object":{"customer":null,"customer_account":"acct_1"}}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := stripeevent.Parse(raw)
		// Parse validates as it reads: it finds a syntax error exactly when json.Valid does.
		require.Equal(t, !json.Valid(raw), errors.Is(err, stripejson.ErrSyntax), "json.Valid and Parse disagree: %v", err)
		if err != nil {
			require.ErrorIs(t, err, stripeevent.ErrInvalid)
			return
		}
		require.NotEmpty(t, ev.ID)
		require.NotEmpty(t, ev.Type)
		require.Positive(t, ev.Created)
		// The fast reader agrees with encoding/json on what it read.
		var env struct {
			ID      string `json:"id"`
			Type    string `json:"type"`
			Created int64  `json:"created"`
			Data    struct {
				Object json.RawMessage `json:"object"`
			} `json:"data"`
		}
		if !ev.Thin && json.Unmarshal(raw, &env) == nil && caseExactKeys(raw) {
			require.Equal(t, env.ID, ev.ID)
			require.Equal(t, env.Type, ev.Type)
			require.Equal(t, env.Created, ev.Created)
		}
	})
}

// caseExactKeys reports whether every key of the top-level object is spelled in lower case:
// encoding/json also matches "ID" to id, which Stripe never sends.
func caseExactKeys(raw []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	for k := range m {
		if k != strings.ToLower(k) {
			return false
		}
	}
	return true
}

func BenchmarkParse(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "stripe-events", "customer.subscription.created.json"))
	require.NoError(b, err)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := stripeevent.Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseThinEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file   string
		wantType     string
		wantCreated  int64
		wantAccount  string
		wantCustomer string
		wantRelated  stripeevent.RelatedObject
		wantRelCtx   string
		wantLive     bool
	}{
		// Stripe's notification of an event generation failure names no object (no
		// related_object: stripe-go's V2CoreHealthEventGenerationFailureResolvedEventNotification).
		{name: "event generation failure resolved, the notification", file: "v2/v2.core.health.event_generation_failure.resolved.json",
			wantType: "v2.core.health.event_generation_failure.resolved", wantCreated: 1795166067},
		// The event retrieved from /v2/core/events/{id} names it in data.impact.related_object.
		{name: "event generation failure resolved, the event retrieved", file: "v2/v2.core.health.event_generation_failure.resolved.event.json",
			wantType: "v2.core.health.event_generation_failure.resolved", wantCreated: 1795166067,
			wantRelated: stripeevent.RelatedObject{ID: "sub_1SThinGenFail0001", Type: "subscription", URL: "/v1/subscriptions/sub_1SThinGenFail0001"}},
		{name: "thin subscription updated with context", file: "v2/v1.customer.subscription.updated.thin.json",
			wantType: "v1.customer.subscription.updated", wantCreated: 1795255200, wantAccount: "acct_1ThinConnected01", wantLive: true,
			wantRelated: stripeevent.RelatedObject{ID: "sub_1SThinUpdated0001", Type: "subscription", URL: "/v1/subscriptions/sub_1SThinUpdated0001"}},
		{name: "thin customer updated routes to the customer", file: "v2/v1.customer.updated.thin.json",
			wantType: "v1.customer.updated", wantCreated: 1795255201, wantCustomer: "cus_ThinCustomer0001",
			wantRelated: stripeevent.RelatedObject{ID: "cus_ThinCustomer0001", Type: "customer", URL: "/v1/customers/cus_ThinCustomer0001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := stripeevent.Parse(fixture(t, tt.file))
			require.NoError(t, err)
			require.True(t, ev.Thin)
			require.Equal(t, tt.wantType, ev.Type)
			require.Equal(t, tt.wantCreated, ev.Created)
			require.Equal(t, tt.wantAccount, ev.Account)
			require.Equal(t, tt.wantCustomer, ev.CustomerID)
			require.Equal(t, tt.wantRelated, ev.RelatedObject)
			require.Equal(t, tt.wantRelCtx, ev.RelatedContext)
			require.Equal(t, tt.wantLive, ev.Livemode)
			require.Nil(t, ev.Object)
		})
	}
}

// TestParseGenerationFailureImpact reads the object of a retrieved event generation failure
// from data.impact (with the connected account it names), whatever the order of its keys, and
// keeps a top-level related_object, where one is sent, over it.
func TestParseGenerationFailureImpact(t *testing.T) {
	t.Parallel()
	const head = `"id":"evt_g","object":"v2.core.event","type":"v2.core.health.event_generation_failure.resolved","created":"2026-11-20T09:14:27Z"`
	tests := map[string]struct {
		raw         string
		wantRelated stripeevent.RelatedObject
		wantCtx     string
	}{
		"impact of a connected account, data first": {
			raw:         `{"data":{"alert_id":"a","impact":{"context":"acct_1Imp","event_type":"invoice.paid","related_object":{"id":"in_1","type":"invoice","url":"/v1/invoices/in_1"}}},` + head + `}`,
			wantRelated: stripeevent.RelatedObject{ID: "in_1", Type: "invoice", URL: "/v1/invoices/in_1"}, wantCtx: "acct_1Imp"},
		"impact with a null context": {
			raw:         `{` + head + `,"data":{"impact":{"context":null,"related_object":{"id":"cus_1","type":"customer","url":"/v1/customers/cus_1"}}}}`,
			wantRelated: stripeevent.RelatedObject{ID: "cus_1", Type: "customer", URL: "/v1/customers/cus_1"}},
		"a top-level related_object wins": {
			raw:         `{` + head + `,"related_object":{"id":"sub_top","type":"subscription","url":"/v1/subscriptions/sub_top"},"data":{"impact":{"related_object":{"id":"in_1","type":"invoice","url":"/v1/invoices/in_1"}}}}`,
			wantRelated: stripeevent.RelatedObject{ID: "sub_top", Type: "subscription", URL: "/v1/subscriptions/sub_top"}},
		"no impact": {raw: `{` + head + `,"data":{"alert_id":"a"}}`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev, err := stripeevent.Parse([]byte(tt.raw))
			require.NoError(t, err)
			require.True(t, ev.Thin)
			require.Equal(t, tt.wantRelated, ev.RelatedObject)
			require.Equal(t, tt.wantCtx, ev.RelatedContext)
			require.Empty(t, ev.Account, "the event's own context is the platform's")
			require.Nil(t, ev.Object)
		})
	}
}

func TestParseCreatedString(t *testing.T) {
	t.Parallel()
	for name, raw := range map[string]string{
		"string created on a classic event":   `{"id":"evt_1","object":"event","type":"customer.updated","created":"2026-11-21T10:00:00Z","data":{"object":{}}}`,
		"thin event with unparseable created": `{"id":"evt_1","object":"v2.core.event","type":"v1.customer.updated","created":"yesterday"}`,
		"thin event without created":          `{"id":"evt_1","object":"v2.core.event","type":"v1.customer.updated"}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := stripeevent.Parse([]byte(raw))
			require.ErrorIs(t, err, stripeevent.ErrInvalid)
		})
	}
}

func TestParseCustomerAccount(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct{ raw, want string }{
		"customer null, customer_account set": {`{"id":"evt_1","object":"event","type":"customer.subscription.updated","created":1795334400,
			"data":{"object":{"id":"sub_1","object":"subscription","customer":null,"customer_account":"acct_1CustAcct"}}}`, "acct_1CustAcct"},
		"basil invoice of an Account: parent.subscription_details, customer null": {`{"id":"evt_1","object":"event","type":"invoice.paid","created":1795334400,"api_version":"2025-09-30.clover",
			"data":{"object":{"id":"in_1","object":"invoice","customer":null,"customer_account":"acct_1CustAcct",
			"parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_1","metadata":{}}}}}}`, "acct_1CustAcct"},
		"customer wins when both are set": {`{"id":"evt_1","object":"event","type":"invoice.paid","created":1795334400,
			"data":{"object":{"id":"in_1","object":"invoice","customer_account":"acct_1CustAcct","customer":"cus_1"}}}`, "cus_1"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ev, err := stripeevent.Parse([]byte(tt.raw))
			require.NoError(t, err)
			require.Equal(t, tt.want, ev.CustomerID)
		})
	}
}
