package main

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/reconcile"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// reconcile --repair against a fake Stripe with planted drift (a cancellation and a whole
// customer whose webhooks never came): the drifted objects are read and applied as snapshot
// events, the read model then agrees with Stripe (exit 0), and a second reconcile finds nothing.
func TestReconcileRepair(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	b.Start(t, processortest.TestOptions(), b.DB.URL)
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{Every500: 4})
	env := map[string]string{"NATS_URL": b.Nats.URL(), "DATABASE_URL": b.DB.URL, "STRIPE_API_KEY": processortest.TestAPIKey, "STRIPE_API_BASE": fake.URL}
	now := time.Now().Unix()

	// What Tollgate saw: cus_a subscribed.
	subA := stripetest.Subscription("sub_a", "cus_a", "active", "price_pro")
	b.Publish(t,
		stripetest.Event{ID: "evt_a_cus", Type: "customer.created", Created: now - 10,
			Object: map[string]any{"id": "cus_a", "object": "customer", "metadata": map[string]any{"user_id": "u_a"}}}.JSON(t),
		stripetest.Event{ID: "evt_a_sub", Type: "customer.subscription.created", Created: now - 9, Object: subA}.JSON(t))
	wait.For(t, 15*time.Second, "cus_a applied", func() bool {
		got, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: "cus_a"})
		return err == nil && got.Status == "active"
	})

	// What Stripe has: sub_a canceled since (the webhook was lost), and cus_b's subscription
	// Tollgate never heard of.
	fake.AddSubscription(t, stripetest.Subscription("sub_a", "cus_a", "canceled", "price_pro"), now-100)
	fake.AddCustomer(t, map[string]any{"id": "cus_a", "object": "customer", "metadata": map[string]any{"user_id": "u_a"}})
	fake.AddSubscription(t, stripetest.Subscription("sub_b", "cus_b", "active", "price_pro"), now-50)
	fake.AddCustomer(t, map[string]any{"id": "cus_b", "object": "customer", "metadata": map[string]any{"user_id": "u_b"}})

	c := runCommand(t.Context(), env, "reconcile")
	require.ErrorIs(t, c.err, reconcile.ErrDrift, c.stdout)

	c = runCommand(t.Context(), env, "reconcile", "--repair", "--wait", "30s")
	t.Logf("reconcile --repair: err=%v\nstdout:\n%sstderr:\n%s", c.err, c.stdout, c.stderr)
	require.NoError(t, c.err, "nothing left after the repair: exit 0")
	require.Contains(t, c.stdout, "After the repair:\nNo drift")

	a, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: "cus_a"})
	require.NoError(t, err)
	require.Equal(t, "canceled", a.Subscriptions[0].Status)
	require.False(t, a.Premium)
	bb, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: "cus_b"})
	require.NoError(t, err)
	require.True(t, bb.Premium)
	require.Equal(t, "u_b", bb.UserID, "the customer is read with its subscription")

	c = runCommand(t.Context(), env, "reconcile")
	require.NoError(t, c.err, c.stdout)
	require.Contains(t, c.stdout, "No drift")
}
