package subscription_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/subscription"
)

// TestExplainEndsInDerive checks, over the property test's generated histories, that Explain
// lists every distinct event once in Order and that its last state is Derive's.
func TestExplainEndsInDerive(t *testing.T) {
	t.Parallel()
	histories := 200
	if testing.Short() {
		histories = 50
	}
	rules := subscription.DefaultRules()
	for seed := range uint64(histories) {
		events := decodeAll(t, generate(t, seed, cus).raws)
		want := subscription.Derive(cus, events, rules)
		steps := subscription.Explain(cus, events, nil, rules)
		ordered := append([]subscription.Event(nil), events...)
		subscription.Order(ordered)
		got := make([]string, len(steps))
		for i, s := range steps {
			got[i] = s.Event.ID
			require.NotEmpty(t, s.Why, "seed %d step %d", seed, i)
		}
		require.Equal(t, ids(ordered), got, "seed %d", seed)
		require.Equal(t, want, steps[len(steps)-1].State, "seed %d", seed)
		require.Equal(t, want.Entitlement(rules), steps[len(steps)-1].Entitlement, "seed %d", seed)
		require.True(t, steps[0].Changed)
	}
}

func TestExplainWhy(t *testing.T) {
	t.Parallel()
	h := newHistory(t, cus, apiBasil)
	s := sub{id: "sub_1", items: []item{proItem()}, created: t0, periodStart: t0, periodEnd: t0 + month, status: "incomplete"}
	h.customerCreated(t0, map[string]string{"user_id": "u_42"})
	h.created(t0+1, s)
	h.invoice(t, t0+2, "invoice.paid", "in_1", "sub_1")
	s.status = "active"
	h.updated(t0+3, s)
	events := decodeAll(t, h.raws)
	undecodable := []subscription.Event{{ID: "evt_bad", Type: "customer.subscription.updated", Created: t0 + 4, CustomerID: cus}}
	steps := subscription.Explain(cus, events, undecodable, subscription.DefaultRules())
	require.Len(t, steps, 5)
	require.Contains(t, steps[0].Why, "user u_42")
	require.Equal(t, "sub_1 new, incomplete: incomplete does not grant access", steps[1].Why)
	require.True(t, steps[1].Changed) // status none -> incomplete
	require.False(t, steps[2].Changed)
	require.Equal(t, "invoice.paid: a type the rules do not read; ignored", steps[2].Why)
	require.Equal(t, "sub_1 incomplete -> active: active grants access", steps[3].Why)
	require.True(t, steps[3].Changed)
	require.True(t, steps[3].Entitlement.Premium)
	require.False(t, steps[4].Applied)
	require.Contains(t, steps[4].Why, "undecodable")
	require.True(t, steps[4].Entitlement.Premium)
}
