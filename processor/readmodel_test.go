package main

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/backfill"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// Some of a customer's events arrived by webhook, the others only through the backfill; the
// consumer derives the right read model from both, the backfilled events taking the same path.
func TestBackfillThenProcessorGivesTheRightReadModel(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{Every429: 2, RetryAfter: 1})
	db := b.DB
	b.Start(t, processortest.TestOptions(), db.URL)

	at := time.Now().Add(-2 * time.Hour).Unix()
	type step struct {
		id, typ, sub, customer, status string
		webhook                        bool
	}
	steps := []step{
		{"evt_rm_1", "customer.subscription.created", "sub_rm_a", "cus_rm_a", "active", true},
		{"evt_rm_2", "customer.subscription.updated", "sub_rm_a", "cus_rm_a", "past_due", false}, // missed
		{"evt_rm_3", "customer.subscription.created", "sub_rm_b", "cus_rm_b", "trialing", false}, // missed
		{"evt_rm_4", "customer.subscription.updated", "sub_rm_b", "cus_rm_b", "active", false},   // missed
		{"evt_rm_5", "customer.subscription.created", "sub_rm_c", "cus_rm_c", "active", true},
		{"evt_rm_6", "customer.subscription.deleted", "sub_rm_c", "cus_rm_c", "canceled", false}, // missed
		{"evt_rm_7", "customer.subscription.created", "sub_rm_d", "cus_rm_d", "incomplete", true},
		{"evt_rm_8", "customer.subscription.updated", "sub_rm_d", "cus_rm_d", "active", true},
	}
	for i, s := range steps {
		raw := stripetest.Event{ID: s.id, Type: s.typ, Created: at + int64(i)*60,
			Object: stripetest.Subscription(s.sub, s.customer, s.status, "price_pro")}.JSON(t)
		b.fake.AddEvent(t, raw, s.webhook)
		if s.webhook {
			b.Webhook(t, raw)
		}
	}

	status := func(customer string) string {
		v, err := entitlement.GetCustomer(t.Context(), db.Pool, scope.Key{ID: customer})
		if errors.Is(err, entitlement.ErrNotFound) {
			return "(none)"
		}
		require.NoError(t, err)
		return v.Status
	}
	wait.For(t, 30*time.Second, "the webhooks applied", func() bool {
		return status("cus_rm_a") == "active" && status("cus_rm_c") == "active" && status("cus_rm_d") == "active"
	})
	require.Equal(t, "(none)", status("cus_rm_b"), "no webhook of cus_rm_b arrived")

	c := b.backfill(t, t.Context(), "--since", "3h")
	require.NoError(t, c.err)
	require.Equal(t, backfill.Counts{Listed: 8, New: 4, AlreadyHad: 4}, summaryCounts(t, c.stdout))

	want := map[string]string{"cus_rm_a": "past_due", "cus_rm_b": "active", "cus_rm_c": "canceled", "cus_rm_d": "active"}
	wait.For(t, 30*time.Second, "the backfilled events applied", func() bool {
		for cus, st := range want {
			if status(cus) != st {
				return false
			}
		}
		return true
	})
	v, err := entitlement.GetCustomer(t.Context(), db.Pool, scope.Key{ID: "cus_rm_c"})
	require.NoError(t, err)
	require.False(t, v.Premium)
	require.Equal(t, "evt_rm_6", v.LastEventID)
	v, err = entitlement.GetCustomer(t.Context(), db.Pool, scope.Key{ID: "cus_rm_a"})
	require.NoError(t, err)
	require.True(t, v.Premium, "past_due grants by default")
	require.Equal(t, "evt_rm_2", v.LastEventID)
}
