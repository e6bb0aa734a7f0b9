package repair_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/repair"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

func TestNeeded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		raw    []byte
		want   repair.Repair
		wanted bool
	}{
		{name: "event generation failure notification: the event is read first",
			raw: stripetest.Fixture(t, "v2/v2.core.health.event_generation_failure.resolved.json"),
			want: repair.Repair{ObjectType: repair.ObjectEvent, ObjectID: "evt_test_65RNmHaDQzxIKXQFcY016RNlzWjTsQabf9NSJmrE3bbsqL", Reason: repair.ReasonGenerationFail,
				SourceEventID: "evt_test_65RNmHaDQzxIKXQFcY016RNlzWjTsQabf9NSJmrE3bbsqL"}, wanted: true},
		{name: "event generation failure retrieved: its subscription",
			raw: stripetest.Fixture(t, "v2/v2.core.health.event_generation_failure.resolved.event.json"),
			want: repair.Repair{ObjectType: "subscription", ObjectID: "sub_1SThinGenFail0001", Reason: repair.ReasonGenerationFail,
				SourceEventID: "evt_test_65RNmHaDQzxIKXQFcY016RNlzWjTsQabf9NSJmrE3bbsqL"}, wanted: true},
		{name: "event generation failure retrieved: a connected account's customer",
			raw: []byte(`{"id":"evt_g","object":"v2.core.event","type":"v2.core.health.event_generation_failure.resolved","created":"2026-11-20T09:14:27Z",
				"livemode":true,"context":null,"data":{"impact":{"context":"acct_1Imp","event_type":"customer.updated",
				"related_object":{"id":"cus_1","type":"customer","url":"/v1/customers/cus_1"}}}}`),
			want: repair.Repair{ObjectType: "customer", ObjectID: "cus_1", Reason: repair.ReasonGenerationFail, Livemode: true,
				Account: "acct_1Imp", SourceEventID: "evt_g"}, wanted: true},
		{name: "thin subscription event keeps livemode and context",
			raw: stripetest.Fixture(t, "v2/v1.customer.subscription.updated.thin.json"),
			want: repair.Repair{ObjectType: "subscription", ObjectID: "sub_1SThinUpdated0001", Reason: repair.ReasonThinEvent, Livemode: true,
				Account: "acct_1ThinConnected01", SourceEventID: "evt_test_65RNmHbThinSubUpdated0001AbCdEfGhIjKlMnOpQrSt"}, wanted: true},
		{name: "thin pause of a subscription (endive)",
			raw: stripetest.Fixture(t, "v2/v1.customer.subscription.paused.thin.json"),
			want: repair.Repair{ObjectType: "subscription", ObjectID: "sub_1SThinPaused0001", Reason: repair.ReasonThinEvent,
				SourceEventID: "evt_test_65RNmHbThinSubPaused0001AbCdEfGhIjKlMnOp"}, wanted: true},
		{name: "thin resume of a subscription (endive)",
			raw: stripetest.Fixture(t, "v2/v1.customer.subscription.resumed.thin.json"),
			want: repair.Repair{ObjectType: "subscription", ObjectID: "sub_1SThinResumed0001", Reason: repair.ReasonThinEvent,
				SourceEventID: "evt_test_65RNmHbThinSubResumed0001AbCdEfGhIjKlMnOp"}, wanted: true},
		{name: "thin checkout session event",
			raw: stripetest.Fixture(t, "v2/v1.checkout.session.completed.thin.json"),
			want: repair.Repair{ObjectType: "checkout.session", ObjectID: "cs_test_ThinCheckout0001", Reason: repair.ReasonThinEvent,
				SourceEventID: "evt_test_65RNmHdThinCheckout00001AbCdEfGhIjKlMnOpQrSt"}, wanted: true},
		{name: "thin event of a billing meter: nothing to derive",
			raw: []byte(`{"id":"evt_m","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered","created":"2024-09-26T17:46:22.134Z",
				"livemode":false,"related_object":{"id":"mtr_1","type":"billing.meter","url":"/v1/billing/meters/mtr_1"}}`)},
		{name: "event generation failure of an invoice is recorded all the same",
			raw: []byte(`{"id":"evt_g","object":"v2.core.event","type":"v2.core.health.event_generation_failure.resolved","created":"2026-11-20T09:14:27Z",
				"livemode":false,"related_object":{"id":"in_1","type":"invoice","url":"/v1/invoices/in_1"}}`),
			want: repair.Repair{ObjectType: "invoice", ObjectID: "in_1", Reason: repair.ReasonGenerationFail, SourceEventID: "evt_g"}, wanted: true},
		{name: "summary without has_more",
			raw: stripetest.Fixture(t, "entitlements.active_entitlement_summary.updated.json")},
		{name: "summary with has_more",
			raw: stripetest.Event{ID: "evt_s", Type: "entitlements.active_entitlement_summary.updated", Created: 1795000000,
				Object: map[string]any{"object": "entitlements.active_entitlement_summary", "customer": "cus_1",
					"entitlements": map[string]any{"object": "list", "data": []any{}, "has_more": true}}}.JSON(t),
			want: repair.Repair{ObjectType: repair.ObjectEntitlementSummary, ObjectID: "cus_1", Reason: repair.ReasonSummaryHasMore, SourceEventID: "evt_s"}, wanted: true},
		{name: "a classic subscription event carries its state",
			raw: stripetest.Fixture(t, "customer.subscription.updated.json")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := stripeevent.Parse(tt.raw)
			require.NoError(t, err)
			got, ok := repair.Needed(ev)
			require.Equal(t, tt.wanted, ok)
			require.Equal(t, tt.want, got)
		})
	}
}
