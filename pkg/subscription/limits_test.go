package subscription_test

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/subscription"
)

func TestParsePlans(t *testing.T) {
	t.Parallel()
	type limits = map[string]map[string]subscription.Limit
	tests := []struct {
		name       string
		in         string
		want       map[string][]string
		wantLimits limits
		wantErr    string // substring of the error; the error wraps ErrInvalidPlans
	}{
		{name: "the contract's object form beside a list",
			in:         `{"price_1": ["pro", "export"], "price_team": {"features": ["team"], "limits": {"projects": 10, "seats": "quantity"}}}`,
			want:       map[string][]string{"price_1": {"export", "pro"}, "price_team": {"team"}},
			wantLimits: limits{"price_team": {"projects": {Value: 10}, "seats": {PerQuantity: true}}}},
		{name: "limits only: an add-on with no features",
			in:         `{"price_addon": {"limits": {"projects": 5}}}`,
			want:       map[string][]string{"price_addon": {}},
			wantLimits: limits{"price_addon": {"projects": {Value: 5}}}},
		{name: "an empty object gives nothing", in: `{"price_free": {}}`, want: map[string][]string{"price_free": {}}},
		{name: "a zero limit is kept", in: `{"price_1": {"limits": {"projects": 0}}}`,
			want: map[string][]string{"price_1": {}}, wantLimits: limits{"price_1": {"projects": {}}}},
		{name: "unknown key", in: `{"price_1": {"features": ["pro"], "limit": {"projects": 1}}}`, wantErr: `"price_1": unknown key "limit"`},
		{name: "negative limit", in: `{"price_1": {"limits": {"projects": -1}}}`, wantErr: `"price_1": limit "projects": want a non-negative integer`},
		{name: "fractional limit", in: `{"price_1": {"limits": {"projects": 1.5}}}`, wantErr: `"price_1": limit "projects"`},
		{name: "another string than quantity", in: `{"price_1": {"limits": {"seats": "qty"}}}`, wantErr: `"price_1": limit "seats"`},
		{name: "limits not an object", in: `{"price_1": {"limits": [1]}}`, wantErr: `"price_1": limits: want an object`},
		{name: "features not a list", in: `{"price_1": {"features": "pro"}}`, wantErr: `"price_1": want an array of feature names`},
		{name: "a name both feature and limit in one id", in: `{"price_1": {"features": ["seats"], "limits": {"seats": 3}}}`,
			wantErr: `"price_1": "seats" is a limit here and a feature of "price_1"`},
		{name: "a name both feature and limit across ids", in: `{"price_1": {"limits": {"export": 3}}, "price_2": ["export"]}`,
			wantErr: `"price_2": "export" is a feature here and a limit of "price_1"`},
		{name: "premium is always a feature", in: `{"price_1": {"limits": {"premium": 1}}}`,
			wantErr: `"price_1": "premium" is always a feature`},
		{name: "empty limit name", in: `{"price_1": {"limits": {"": 1}}}`, wantErr: `"price_1": empty limit name`},
		{name: "a number", in: `{"price_1": 3}`, wantErr: `"price_1": want an array of feature names or an object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := subscription.ParsePlans(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				require.ErrorIs(t, err, subscription.ErrInvalidPlans)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got.Features)
			require.Equal(t, tt.wantLimits, got.Limits)
		})
	}
}

func TestEntitlementLimits(t *testing.T) {
	t.Parallel()
	type items = []subscription.Item
	s := func(id, status string, its items) subscription.Subscription {
		sub := subscription.Subscription{ID: id, Status: status, Items: its}
		for _, it := range its {
			sub.PriceIDs = append(sub.PriceIDs, it.PriceID)
			sub.ProductIDs = append(sub.ProductIDs, it.ProductID)
		}
		return sub
	}
	rules := subscription.DefaultRules()
	rules.Plans = map[string][]string{"price_pro": {"pro"}, "price_addon": {}, "prod_team": {"team"}, "price_seats_only": {"team"}}
	rules.Limits = map[string]map[string]subscription.Limit{
		"price_pro":        {"projects": {Value: 10}},
		"price_addon":      {"projects": {Value: 5}},
		"prod_team":        {"projects": {Value: 50}, "seats": {PerQuantity: true}},
		"price_seats_only": {"seats": {PerQuantity: true}},
	}
	pro := subscription.Item{PriceID: "price_pro", ProductID: "prod_pro", Quantity: 1}
	addon := subscription.Item{PriceID: "price_addon", ProductID: "prod_addon", Quantity: 3}
	team := func(q int64) subscription.Item {
		return subscription.Item{PriceID: "price_team_m", ProductID: "prod_team", Quantity: q}
	}
	tests := []struct {
		name  string
		subs  []subscription.Subscription
		rules subscription.Rules
		want  map[string]int64
	}{
		{name: "a fixed limit counts once per item, whatever the quantity",
			subs: []subscription.Subscription{s("sub_a", "active", items{pro, addon})},
			want: map[string]int64{"projects": 15}},
		{name: "quantity stands for the item's quantity (seats), from the product's entry",
			subs: []subscription.Subscription{s("sub_a", "active", items{team(7)})},
			want: map[string]int64{"projects": 50, "seats": 7}},
		{name: "sum over the granting subscriptions",
			subs: []subscription.Subscription{s("sub_a", "active", items{pro}), s("sub_b", "trialing", items{team(2)})},
			want: map[string]int64{"projects": 60, "seats": 2}},
		{name: "a subscription that does not grant gives no limits",
			subs: []subscription.Subscription{s("sub_a", "active", items{pro}), s("sub_b", "canceled", items{team(9)}), s("sub_c", "paused", items{addon})},
			want: map[string]int64{"projects": 10}},
		{name: "the price's entry wins over the product's",
			subs: []subscription.Subscription{s("sub_a", "active", items{{PriceID: "price_seats_only", ProductID: "prod_team", Quantity: 4}})},
			want: map[string]int64{"seats": 4}},
		{name: "an unlisted item gives none",
			subs: []subscription.Subscription{s("sub_a", "active", items{{PriceID: "price_x", ProductID: "prod_x", Quantity: 4}})}},
		{name: "no plans file: no limits",
			subs: []subscription.Subscription{s("sub_a", "active", items{team(3)})}, rules: subscription.DefaultRules()},
		{name: "a metered item without quantity counts 0 seats",
			subs: []subscription.Subscription{s("sub_a", "active", items{team(0)})},
			want: map[string]int64{"projects": 50, "seats": 0}},
		{name: "sums saturate",
			subs: []subscription.Subscription{s("sub_a", "active", items{team(math.MaxInt64), team(math.MaxInt64 - 1)})},
			want: map[string]int64{"projects": 100, "seats": math.MaxInt64}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := rules
			if tt.rules.UserIDMetadataKey != "" {
				r = tt.rules
			}
			got := subscription.State{Subscriptions: tt.subs}.Entitlement(r)
			require.Equal(t, tt.want, got.Limits)
		})
	}
}

func TestMergeSumsLimits(t *testing.T) {
	t.Parallel()
	a := subscription.Entitlement{Premium: true, Status: "active", Features: []string{"pro"}, Limits: map[string]int64{"projects": 10, "seats": 2}}
	b := subscription.Entitlement{Status: "canceled", Features: []string{}}
	c := subscription.Entitlement{Premium: true, Status: "trialing", Features: []string{"team"}, Limits: map[string]int64{"seats": 5}}
	want := subscription.Entitlement{Premium: true, Status: "active", Features: []string{"pro", "team"}, Limits: map[string]int64{"projects": 10, "seats": 7}}
	require.Equal(t, want, subscription.Merge(a, b, c))
	require.Equal(t, want, subscription.Merge(c, a, b))
	require.Equal(t, subscription.Entitlement{Status: "none", Features: []string{}}, subscription.Merge())
}

func TestWithGrants(t *testing.T) {
	t.Parallel()
	none := subscription.Entitlement{Status: "none", Features: []string{}}
	pro := subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium", "pro"}, Limits: map[string]int64{"projects": 10}}
	tests := []struct {
		name   string
		base   subscription.Entitlement
		grants []subscription.Grant
		want   subscription.Entitlement
	}{
		{name: "no grants: unchanged", base: pro, want: pro},
		{name: "a grant of premium alone gives premium; status stays none",
			base: none, grants: []subscription.Grant{{Features: []string{"premium"}}},
			want: subscription.Entitlement{Premium: true, Status: "none", Features: []string{"premium"}}},
		{name: "a grant of export gives that feature, not premium",
			base: none, grants: []subscription.Grant{{Features: []string{"export"}}},
			want: subscription.Entitlement{Status: "none", Features: []string{"export"}}},
		{name: "grant limits add on top of the subscriptions'",
			base: pro, grants: []subscription.Grant{{Limits: map[string]int64{"projects": 5}}, {Features: []string{"beta"}, Limits: map[string]int64{"projects": 1, "seats": 3}}},
			want: subscription.Entitlement{Premium: true, Status: "active", Features: []string{"beta", "premium", "pro"}, Limits: map[string]int64{"projects": 16, "seats": 3}}},
		{name: "a limit-only grant to a user without subscriptions",
			base: subscription.Entitlement{}, grants: []subscription.Grant{{Limits: map[string]int64{"projects": 5}}},
			want: subscription.Entitlement{Status: "none", Features: []string{}, Limits: map[string]int64{"projects": 5}}},
		{name: "limits saturate",
			base: pro, grants: []subscription.Grant{{Limits: map[string]int64{"projects": math.MaxInt64}}},
			want: subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium", "pro"}, Limits: map[string]int64{"projects": math.MaxInt64}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, subscription.WithGrants(tt.base, tt.grants...))
			if len(tt.grants) > 1 {
				rev := []subscription.Grant{tt.grants[1], tt.grants[0]}
				require.Equal(t, tt.want, subscription.WithGrants(tt.base, rev...), "any order")
			}
		})
	}
	require.Equal(t, map[string]int64{"projects": 10}, pro.Limits, "the base is not modified")
}
