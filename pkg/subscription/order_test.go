package subscription_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/subscription"
)

func ids(events []subscription.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// permutations calls fn with every permutation of events (Heap's algorithm).
func permutations(events []subscription.Event, fn func([]subscription.Event)) {
	a := slices.Clone(events)
	c := make([]int, len(a))
	fn(slices.Clone(a))
	for i := 0; i < len(a); {
		if c[i] < i {
			if i%2 == 0 {
				a[0], a[i] = a[i], a[0]
			} else {
				a[c[i]], a[i] = a[i], a[c[i]]
			}
			fn(slices.Clone(a))
			c[i]++
			i = 0
		} else {
			c[i] = 0
			i++
		}
	}
}

// TestOrderSameSecond checks that every input order of histories whose events share seconds comes
// out in the order Stripe created them. Event ids are random, so sorting by id alone would not do.
func TestOrderSameSecond(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		build func(t *testing.T, h *history)
	}{
		{
			name: "created before updated",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1Ord1")
				s.status = "incomplete"
				h.created(t0, s)
				s.status = "active"
				h.updated(t0, s)
			},
		},
		{
			name: "updates chained by previous_attributes, status returning to an earlier value",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1Ord2")
				h.created(t0-5, s)
				s.status = "past_due"
				h.updated(t0, s)
				s.status = "active"
				h.updated(t0, s)
				s.status = "past_due"
				h.updated(t0, s)
				s.status = "unpaid"
				h.updated(t0, s)
			},
		},
		{
			name: "a state revisited before moving on",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1Ord3")
				h.created(t0-5, s)
				s.cancelAtPeriodEnd = true
				h.updated(t0, s)
				s.cancelAtPeriodEnd = false
				h.updated(t0, s)
				s.items = []item{teamItem()}
				h.updated(t0, s)
			},
		},
		{
			name: "paused and resumed echo the updates that caused them",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1Ord4")
				s.status, s.trialEnd = "trialing", t0
				h.created(t0-day, s)
				s.status = "paused"
				h.updated(t0, s)
				h.subscription(t0, "customer.subscription.paused", s)
				s.status = "active"
				h.updated(t0, s)
				h.subscription(t0, "customer.subscription.resumed", s)
			},
		},
		{
			name: "customer metadata changes chained by previous_attributes",
			build: func(_ *testing.T, h *history) {
				h.customerCreated(t0, map[string]string{"user_id": "u_1"})
				h.customerUpdated(t0, map[string]string{"user_id": "u_2"})
				h.customerUpdated(t0, map[string]string{"user_id": "u_2", "team": "t_1"})
				h.customerUpdated(t0, map[string]string{"user_id": "u_3", "team": "t_1"})
			},
		},
		{
			name: "2025 basil renewals chained through items",
			build: func(_ *testing.T, h *history) {
				h.api = apiBasil
				s := proSub("sub_1Ord5")
				h.created(t0-5, s)
				s.periodStart, s.periodEnd, s.latestInvoice = t0+month, t0+2*month, "in_Ord52"
				h.updated(t0, s)
				s.status = "past_due"
				h.updated(t0, s)
				s.status = "active"
				h.updated(t0, s)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHistory(t, cus, apiV2024)
			tt.build(t, h)
			events := decodeAll(t, h.raws)
			want := ids(events)
			require.NotEqual(t, want, slices.Sorted(slices.Values(want)),
				"ids happen to be in creation order; the test could not fail")
			permutations(events, func(p []subscription.Event) {
				subscription.Order(p)
				require.Equal(t, want, ids(p))
			})
		})
	}
}

func TestOrderDeletedLast(t *testing.T) {
	t.Parallel()
	h := newHistory(t, cus, apiV2024)
	s := proSub("sub_1Del")
	h.created(t0-day, s)
	h.customerCreated(t0-day, nil)
	at := t0
	h.invoice(t, at, "invoice.voided", "in_Del1", s.id)
	s.status, s.endedAt = "canceled", at
	h.deleted(at, s)
	h.customerDeleted(at)
	s2 := proSub("sub_1Del2")
	s2.created = at
	h.created(at, s2)
	h.updated(at, s2)
	events := decodeAll(t, h.raws)
	permutations(events, func(p []subscription.Event) {
		subscription.Order(p)
		var types []string
		for _, e := range p {
			types = append(types, e.Type)
		}
		require.ElementsMatch(t, []string{"customer.subscription.created", "customer.created"}, types[:2])
		require.Equal(t, "customer.subscription.created", types[2], "a creation comes first in its second")
		require.ElementsMatch(t, []string{"invoice.voided", "customer.subscription.updated"}, types[3:5])
		require.ElementsMatch(t, []string{"customer.subscription.deleted", "customer.deleted"}, types[5:])
	})
}

func TestOrderByCreated(t *testing.T) {
	t.Parallel()
	events := []subscription.Event{
		{ID: "evt_c", Type: "invoice.paid", Created: 3},
		{ID: "evt_a", Type: "invoice.paid", Created: 2},
		{ID: "evt_b", Type: "invoice.created", Created: 1},
		{ID: "evt_d", Type: "invoice.updated", Created: 3},
		{ID: "evt_e", Type: "invoice.created", Created: 3},
		{ID: "evt_f", Type: "invoice.deleted", Created: 3},
	}
	subscription.Order(events)
	require.Equal(t, []string{"evt_b", "evt_a", "evt_e", "evt_c", "evt_d", "evt_f"}, ids(events))
	subscription.Order(nil)
}
