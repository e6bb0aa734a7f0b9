package repairer_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/repairer"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/repair"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

func openRepairs(t *testing.T, b *processortest.Bundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.DB.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pending_repairs WHERE done_at IS NULL`).Scan(&n))
	return n
}

// A thin event without STRIPE_API_KEY: the repair is kept and counted, never dropped; once a
// key is configured it is done and the object applied.
func TestRepairWaitsForAKey(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	b.Start(t, processortest.TestOptions(), b.DB.URL)
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{Every500: 3})
	periodEnd := time.Now().Add(24 * time.Hour).Unix()
	fake.AddSubscription(t, stripetest.SubscriptionIn("2023-10-16", "sub_1SThinUpdated0001", "cus_rep", "", "trialing", "price_pro", periodEnd), time.Now().Unix())
	fake.AddCustomer(t, map[string]any{"id": "cus_rep", "object": "customer", "metadata": map[string]any{"user_id": "u_rep"}})

	b.Publish(t, stripetest.Fixture(t, "v2/v1.customer.subscription.updated.thin.json"))
	wait.For(t, 10*time.Second, "the thin event is stored with its repair", func() bool { return openRepairs(t, b) == 1 })

	reg := prometheus.NewRegistry()
	rep := &repairer.Repairer{DB: b.DB.Pool, JS: b.JS, Log: processortest.TestLogger(t), Metrics: repairer.NewMetrics(reg), Now: time.Now}
	for range 3 {
		_, err := rep.RunOnce(t.Context())
		require.NoError(t, err)
	}
	require.Equal(t, 1, openRepairs(t, b), "kept without a key")
	require.InDelta(t, 1.0, processortest.Counter(rep.Metrics.Open.WithLabelValues(repair.ObjectSubscription)), 0)

	api := stripeapi.New(config.StripeAPI{Key: processortest.TestAPIKey, Base: fake.URL}, stripeapi.Options{BaseDelay: time.Millisecond})
	t.Cleanup(api.Close)
	rep.API = api
	wait.For(t, 20*time.Second, "the repair is done", func() bool {
		_, err := rep.RunOnce(t.Context())
		return err == nil && openRepairs(t, b) == 0
	})
	require.InDelta(t, 0.0, processortest.Counter(rep.Metrics.Open.WithLabelValues(repair.ObjectSubscription)), 0)
	wait.For(t, 20*time.Second, "the snapshots are applied", func() bool {
		// The thin event's scope: live mode, its connected account.
		got, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{Scope: scope.Scope{Livemode: true, Account: "acct_1ThinConnected01"}, ID: "cus_rep"})
		return err == nil && got.Status == "trialing" && got.UserID == "u_rep"
	})
	var livemode bool
	var account string
	require.NoError(t, b.DB.Pool.QueryRow(t.Context(),
		`SELECT livemode, account FROM pending_repairs`).Scan(&livemode, &account))
	require.True(t, livemode)
	require.Equal(t, "acct_1ThinConnected01", account)
}

// An entitlement summary with has_more is completed from the API; without a key it is counted
// as incomplete.
func TestRepairCompletesSummaryWithMore(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	b.Start(t, processortest.TestOptions(), b.DB.URL)
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{})
	data := make([]any, 10)
	for i := range 12 {
		key := fmt.Sprintf("feature_%02d", i)
		fake.AddActiveEntitlement(t, "cus_more", key)
		if i < 10 {
			data[i] = map[string]any{"id": fmt.Sprintf("ent_%d", i), "object": "entitlements.active_entitlement", "lookup_key": key}
		}
	}
	now := time.Now().Unix()
	b.Publish(t,
		stripetest.Event{ID: "evt_more_sub", Type: "customer.subscription.created", Created: now - 1,
			Object: stripetest.Subscription("sub_more", "cus_more", "active", "price_pro")}.JSON(t),
		stripetest.Event{ID: "evt_more", Type: "entitlements.active_entitlement_summary.updated", Created: now,
			Object: map[string]any{"object": "entitlements.active_entitlement_summary", "customer": "cus_more", "livemode": false,
				"entitlements": map[string]any{"object": "list", "data": data, "has_more": true}}}.JSON(t))
	wait.For(t, 10*time.Second, "the summary is stored with its repair", func() bool { return openRepairs(t, b) == 1 })

	rep := &repairer.Repairer{DB: b.DB.Pool, JS: b.JS, Log: processortest.TestLogger(t), Metrics: repairer.NewMetrics(prometheus.NewRegistry()), Now: time.Now}
	_, err := rep.RunOnce(t.Context())
	require.NoError(t, err)
	require.InDelta(t, 1.0, processortest.Counter(rep.Metrics.Incomplete), 0)

	api := stripeapi.New(config.StripeAPI{Key: processortest.TestAPIKey, Base: fake.URL}, stripeapi.Options{})
	t.Cleanup(api.Close)
	rep.API = api
	_, err = rep.RunOnce(t.Context())
	require.NoError(t, err)
	require.InDelta(t, 0.0, processortest.Counter(rep.Metrics.Incomplete), 0)
	wait.For(t, 20*time.Second, "all 12 features are in the read model", func() bool {
		got, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: "cus_more"})
		return err == nil && slices.Contains(got.Features, "feature_11") && slices.Contains(got.Features, "feature_00")
	})
}

// Stripe's notification of an event generation failure names no object: the repair reads the
// event (GET /v2/core/events/{id}), whose data.impact.related_object names the subscription,
// then the subscription and its customer.
func TestRepairReadsTheEventOfAGenerationFailure(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	b.Start(t, processortest.TestOptions(), b.DB.URL)
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{})
	periodEnd := time.Now().Add(24 * time.Hour).Unix()
	fake.AddSubscription(t, stripetest.SubscriptionIn("2026-03-25.dahlia", "sub_1SThinGenFail0001", "cus_gen", "", "active", "price_pro", periodEnd), time.Now().Unix())
	fake.AddCustomer(t, map[string]any{"id": "cus_gen", "object": "customer", "metadata": map[string]any{"user_id": "u_gen"}})
	fake.AddV2Event(t, stripetest.Fixture(t, "v2/v2.core.health.event_generation_failure.resolved.event.json"))

	b.Publish(t, stripetest.Fixture(t, "v2/v2.core.health.event_generation_failure.resolved.json"))
	wait.For(t, 10*time.Second, "the notification is stored with its repair", func() bool { return openRepairs(t, b) == 1 })

	api := stripeapi.New(config.StripeAPI{Key: processortest.TestAPIKey, Base: fake.URL}, stripeapi.Options{})
	t.Cleanup(api.Close)
	rep := &repairer.Repairer{DB: b.DB.Pool, API: api, JS: b.JS, Log: processortest.TestLogger(t), Metrics: repairer.NewMetrics(prometheus.NewRegistry()), Now: time.Now}
	wait.For(t, 20*time.Second, "the repair is done", func() bool {
		_, err := rep.RunOnce(t.Context())
		return err == nil && openRepairs(t, b) == 0
	})
	wait.For(t, 20*time.Second, "the subscription the event names is applied", func() bool {
		got, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: "cus_gen"})
		return err == nil && got.Status == "active" && got.UserID == "u_gen"
	})
	var objectType, outcome string
	require.NoError(t, b.DB.Pool.QueryRow(t.Context(), `SELECT object_type, outcome FROM pending_repairs`).Scan(&objectType, &outcome))
	require.Equal(t, repair.ObjectEvent, objectType)
	require.Equal(t, "applied", outcome)
	var paths []string
	for _, r := range fake.Requests() {
		paths = append(paths, r.Path)
		if strings.HasPrefix(r.Path, "/v2/") {
			require.Equal(t, stripeapi.V2APIVersion, r.Version, "a v2 request names a version that serves v2")
			require.Empty(t, r.Account, "v2 names an account with Stripe-Context, not Stripe-Account")
		} else {
			require.Equal(t, stripe.APIVersion, r.Version)
		}
	}
	require.Equal(t, []string{"/v2/core/events/evt_test_65RNmHaDQzxIKXQFcY016RNlzWjTsQabf9NSJmrE3bbsqL",
		"/v1/subscriptions/sub_1SThinGenFail0001", "/v1/customers/cus_gen"}, paths)
}

// An operator's repair of a customer reads the customer and lists every subscription Stripe has
// for it, in the repair's account; an Accounts v2 customer (acct_…) has no customer object and
// its subscriptions are listed by customer_account.
func TestRepairOfACustomerListsItsSubscriptions(t *testing.T) {
	t.Parallel()
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{})
	fake.AddCustomer(t, map[string]any{"id": "cus_all", "object": "customer", "metadata": map[string]any{"user_id": "u_all"}})
	fake.AddSubscription(t, stripetest.Subscription("sub_old", "cus_all", "canceled", "price_1"), 1_700_000_000)
	fake.AddSubscription(t, stripetest.Subscription("sub_new", "cus_all", "active", "price_1"), 1_700_000_100)
	fake.AddSubscription(t, stripetest.Subscription("sub_other", "cus_other", "active", "price_1"), 1_700_000_200)
	v2 := stripetest.Subscription("sub_v2", "", "active", "price_1")
	delete(v2, "customer")
	v2["customer_account"] = "acct_1V2Customer"
	fake.AddSubscription(t, v2, 1_700_000_300)
	api := stripeapi.New(config.StripeAPI{Key: processortest.TestAPIKey, Base: fake.URL}, stripeapi.Options{})
	t.Cleanup(api.Close)

	objects := func(customer string) []string {
		t.Helper()
		evs, err := repairer.Snapshots(t.Context(), api, repair.Repair{ObjectType: repair.ObjectCustomerSubscriptions, ObjectID: customer,
			SourceEventID: "tgconsole_1", Reason: "operator console"}, time.Now)
		require.NoError(t, err)
		var out []string
		for _, ev := range evs {
			d, err := subscription.Decode(ev)
			require.NoError(t, err)
			switch {
			case d.Customer != nil:
				out = append(out, ev.Type+" "+d.Customer.ID)
			case d.Subscription != nil:
				out = append(out, ev.Type+" "+d.Subscription.ID+" "+d.Subscription.CustomerID)
			}
		}
		return out
	}
	require.Equal(t, []string{stripeevent.SnapshotType("customer") + " cus_all",
		stripeevent.SnapshotType("subscription") + " sub_new cus_all",
		stripeevent.SnapshotType("subscription") + " sub_old cus_all"}, objects("cus_all"), "the customer first, then every subscription, any status")
	require.Equal(t, []string{stripeevent.SnapshotType("subscription") + " sub_v2 acct_1V2Customer"}, objects("acct_1V2Customer"))
	var lists []string
	for _, r := range fake.Requests() {
		if r.Path == "/v1/subscriptions" {
			lists = append(lists, r.Query.Get("customer")+r.Query.Get("customer_account")+" "+r.Query.Get("status"))
		}
	}
	require.Equal(t, []string{"cus_all all", "acct_1V2Customer all"}, lists)
}
