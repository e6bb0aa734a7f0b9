package subscription_test

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/subscription"
)

// endiveHistory reads a history of testdata/endive (a JSON array of events, in the order Stripe
// sent them) as raw payloads.
func endiveHistory(t *testing.T, name string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "endive", name+".json"))
	require.NoError(t, err)
	var events []json.RawMessage
	require.NoError(t, json.Unmarshal(data, &events))
	raws := make([][]byte, len(events))
	for i, e := range events {
		raws[i] = e
	}
	return raws
}

// The shapes of 2026-09-30.endive and later: pauses on demand and the automatic ones (a paused
// subscription never grants; resumed, it grants as its status says), and Trial Offers (an item
// in a trial offer makes an active subscription trialing, its trial_end the offer's end).
// Each row derives the first n events of a history (in any order, with duplicates).
func TestDeriveEndive(t *testing.T) {
	t.Parallel()
	const t0 = int64(1765000000)
	const day, month = int64(86400), int64(30 * 86400)
	rules := subscription.DefaultRules()
	rules.Plans = map[string][]string{"prod_TEndiveTeam": {"team"}}
	rules.Limits = map[string]map[string]subscription.Limit{"prod_TEndiveTeam": {"projects": {Value: 10}, "seats": {PerQuantity: true}}}
	tests := []struct {
		name      string
		history   string
		n         int
		want      subscription.Entitlement
		trialEnd  int64 // 0: null
		wantItems []subscription.Item
	}{
		{name: "active before the pause", history: "pause_on_demand", n: 2,
			want: subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium"}}},
		{name: "paused on demand does not grant", history: "pause_on_demand", n: 4,
			want: subscription.Entitlement{Status: "paused", Features: []string{}}},
		{name: "resumed: active again", history: "pause_on_demand", n: 6,
			want: subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium"}}},
		{name: "past_due keeps access before the automatic pause", history: "pause_after_failed_payment", n: 3,
			want: subscription.Entitlement{Premium: true, Status: "past_due", Features: []string{"premium"}}},
		{name: "paused after the failed payment does not grant", history: "pause_after_failed_payment", n: 5,
			want: subscription.Entitlement{Status: "paused", Features: []string{}}},
		{name: "trialing without a payment method", history: "pause_after_trial_without_payment_method", n: 3,
			want: subscription.Entitlement{Premium: true, Status: "trialing", Features: []string{"premium"}}, trialEnd: t0 + 14*day},
		{name: "the trial ended without a payment method: paused", history: "pause_after_trial_without_payment_method", n: 5,
			want: subscription.Entitlement{Status: "paused", Features: []string{}}, trialEnd: t0 + 14*day},
		{name: "a payment method resumes it: active", history: "pause_after_trial_without_payment_method", n: 7,
			want: subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium"}}, trialEnd: t0 + 14*day},
		{name: "a trial offer grants as trialing, trial_end from the offer", history: "trial_offer", n: 2,
			want:     subscription.Entitlement{Premium: true, Status: "trialing", Features: []string{"team"}, Limits: map[string]int64{"projects": 10, "seats": 3}},
			trialEnd: t0 + 2*month,
			wantItems: []subscription.Item{{PriceID: "price_1TEndiveIntro", ProductID: "prod_TEndiveTeam", Quantity: 3,
				InTrial: true, TrialEnd: t0 + 2*month}}},
		{name: "the offer ended: active at the full price", history: "trial_offer", n: 3,
			want:      subscription.Entitlement{Premium: true, Status: "active", Features: []string{"team"}, Limits: map[string]int64{"projects": 10, "seats": 3}},
			wantItems: []subscription.Item{{PriceID: "price_1TEndiveTeam", ProductID: "prod_TEndiveTeam", Quantity: 3}}},
		{name: "seats follow the item's quantity", history: "trial_offer", n: 4,
			want: subscription.Entitlement{Premium: true, Status: "active", Features: []string{"team"}, Limits: map[string]int64{"projects": 10, "seats": 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			events := decodeAll(t, endiveHistory(t, tt.history)[:tt.n])
			st := subscription.Derive("cus_TEndive0001", events, rules)
			require.Equal(t, "u_endive", st.UserID)
			require.Len(t, st.Subscriptions, 1)
			require.Equal(t, tt.want, st.Entitlement(rules))
			if tt.trialEnd == 0 {
				require.Nil(t, st.Subscriptions[0].TrialEnd)
			} else {
				require.Equal(t, unix(tt.trialEnd), st.Subscriptions[0].TrialEnd)
			}
			if tt.wantItems != nil {
				require.Equal(t, tt.wantItems, st.Subscriptions[0].Items)
			}
			r := rand.New(rand.NewPCG(uint64(tt.n), 7))
			for range 20 {
				delivered := slices.Clone(events)
				for range r.IntN(3) {
					delivered = append(delivered, events[r.IntN(len(events))])
				}
				r.Shuffle(len(delivered), func(i, j int) { delivered[i], delivered[j] = delivered[j], delivered[i] })
				require.Equal(t, st, subscription.Derive("cus_TEndive0001", delivered, rules), "any order, any duplicates")
			}
		})
	}
}
