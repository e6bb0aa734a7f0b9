package subscription_test

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/subscription"
)

func TestLoadPlans(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    map[string][]string
		wantErr string // substring of the error; the error wraps ErrInvalidPlans
	}{
		{name: "contract example", in: `{"price_1": ["pro", "export"], "prod_2": ["team"]}`,
			want: map[string][]string{"price_1": {"export", "pro"}, "prod_2": {"team"}}},
		{name: "features deduplicated, empty list kept", in: `{"price_1": ["b", "a", "b"], "plan_legacy": []}`,
			want: map[string][]string{"price_1": {"a", "b"}, "plan_legacy": {}}},
		{name: "empty object", in: ` {} `, want: map[string][]string{}},
		{name: "empty file", in: "  \n", wantErr: "empty"},
		{name: "array", in: `["pro"]`, wantErr: "got an array"},
		{name: "null", in: `null`, wantErr: "got null"},
		{name: "not JSON", in: `{price_1: ["pro"]}`, wantErr: "not valid JSON"},
		{name: "truncated", in: `{"price_1": ["pro"]`, wantErr: "unexpected end"},
		{name: "value not an array", in: `{"price_1": "pro"}`, wantErr: `"price_1": want an array`},
		{name: "null value", in: `{"price_1": null}`, wantErr: `"price_1": want an array`},
		{name: "feature not a string", in: `{"price_1": ["pro", 2]}`, wantErr: `"price_1": want an array of feature names (strings)`},
		{name: "empty feature", in: `{"price_1": ["pro", " "]}`, wantErr: `"price_1": empty feature name`},
		{name: "empty id", in: `{"": ["pro"]}`, wantErr: "empty price or product id"},
		{name: "duplicate id", in: `{"price_1": ["pro"], "price_1": ["team"]}`, wantErr: `"price_1" appears more than once`},
		{name: "trailing data", in: `{"price_1": ["pro"]} {}`, wantErr: "after the JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := subscription.LoadPlans(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				require.ErrorIs(t, err, subscription.ErrInvalidPlans)
				require.ErrorContains(t, err, tt.wantErr)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestLoadPlansReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	_, err := subscription.LoadPlans(iotest.ErrReader(boom))
	require.ErrorIs(t, err, boom)
	require.NotErrorIs(t, err, subscription.ErrInvalidPlans)
}

func TestDefaultRules(t *testing.T) {
	t.Parallel()
	require.Equal(t, subscription.Rules{UserIDMetadataKey: "user_id", PastDueGrants: true}, subscription.DefaultRules())
}

func TestGrants(t *testing.T) {
	t.Parallel()
	pastDueGrants := subscription.DefaultRules()
	strict := subscription.Rules{PastDueGrants: false}
	tests := []struct {
		status             string
		withPastDue, strct bool
	}{
		{"active", true, true},
		{"trialing", true, true},
		{"past_due", true, false},
		{"unpaid", false, false},
		{"paused", false, false},
		{"incomplete", false, false},
		{"incomplete_expired", false, false},
		{"canceled", false, false},
		{"none", false, false},
		{"some_future_status", false, false},
		{"", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.withPastDue, subscription.Grants(tt.status, pastDueGrants))
			require.Equal(t, tt.strct, subscription.Grants(tt.status, strict))
		})
	}
}

func TestEntitlement(t *testing.T) {
	t.Parallel()
	s := func(id, status string, prices, products []string) subscription.Subscription {
		return subscription.Subscription{ID: id, Status: status, PriceIDs: prices, ProductIDs: products}
	}
	plans := map[string][]string{"price_pro": {"pro"}, "prod_team": {"team", "pro"}, "price_free": {}}
	tests := []struct {
		name  string
		state subscription.State
		rules subscription.Rules
		want  subscription.Entitlement
	}{
		{name: "no subscriptions", rules: subscription.DefaultRules(),
			want: subscription.Entitlement{Status: "none", Features: []string{}}},
		{name: "best status is reported even when it does not grant",
			state: subscription.State{Subscriptions: []subscription.Subscription{
				s("sub_a", "canceled", nil, nil), s("sub_b", "incomplete", nil, nil), s("sub_c", "unpaid", nil, nil)}},
			rules: subscription.DefaultRules(),
			want:  subscription.Entitlement{Status: "unpaid", Features: []string{}}},
		{name: "status order active over trialing",
			state: subscription.State{Subscriptions: []subscription.Subscription{
				s("sub_a", "trialing", nil, nil), s("sub_b", "active", nil, nil)}},
			rules: subscription.DefaultRules(),
			want:  subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium"}}},
		{name: "unknown status ranks after canceled, before none",
			state: subscription.State{Subscriptions: []subscription.Subscription{s("sub_a", "frozen", nil, nil)}},
			rules: subscription.DefaultRules(),
			want:  subscription.Entitlement{Status: "frozen", Features: []string{}}},
		{name: "features from price and product, union with the default",
			state: subscription.State{Subscriptions: []subscription.Subscription{
				s("sub_a", "active", []string{"price_pro"}, []string{"prod_x"}),
				s("sub_b", "trialing", []string{"price_y"}, []string{"prod_team"}),
				s("sub_c", "past_due", []string{"price_unknown"}, []string{"prod_unknown"}),
				s("sub_d", "canceled", []string{"price_gone"}, nil),
			}},
			rules: subscription.Rules{PastDueGrants: true, Plans: plans},
			want:  subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium", "pro", "team"}}},
		{name: "an id listed with no features gives none, not premium",
			state: subscription.State{Subscriptions: []subscription.Subscription{s("sub_a", "active", []string{"price_free"}, []string{"prod_free"})}},
			rules: subscription.Rules{Plans: plans},
			want:  subscription.Entitlement{Premium: true, Status: "active", Features: []string{}}},
		{name: "entitlement lookup keys only while granting",
			state: subscription.State{EntitlementFeatures: []string{"sso"},
				Subscriptions: []subscription.Subscription{s("sub_a", "past_due", nil, nil)}},
			rules: subscription.Rules{PastDueGrants: false},
			want:  subscription.Entitlement{Status: "past_due", Features: []string{}}},
		{name: "entitlement lookup keys added and deduplicated",
			state: subscription.State{EntitlementFeatures: []string{"premium", "sso"},
				Subscriptions: []subscription.Subscription{s("sub_a", "past_due", nil, nil)}},
			rules: subscription.DefaultRules(),
			want:  subscription.Entitlement{Premium: true, Status: "past_due", Features: []string{"premium", "sso"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, tt.state.Entitlement(tt.rules))
		})
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	none := subscription.Entitlement{Status: "none", Features: []string{}}
	tests := []struct {
		name string
		ents []subscription.Entitlement
		want subscription.Entitlement
	}{
		{name: "nothing", want: none},
		{name: "one", ents: []subscription.Entitlement{{Premium: true, Status: "trialing", Features: []string{"b", "a"}}},
			want: subscription.Entitlement{Premium: true, Status: "trialing", Features: []string{"a", "b"}}},
		{name: "premium if any, best status, union of features",
			ents: []subscription.Entitlement{
				{Status: "canceled", Features: []string{}},
				{Premium: true, Status: "past_due", Features: []string{"premium", "team"}},
				none,
				{Premium: true, Status: "active", Features: []string{"premium"}},
			},
			want: subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium", "team"}}},
		{name: "zero values count as none",
			ents: []subscription.Entitlement{{}, {Status: "incomplete"}},
			want: subscription.Entitlement{Status: "incomplete", Features: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, subscription.Merge(tt.ents...))
			reversed := append([]subscription.Entitlement(nil), tt.ents...)
			for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
				reversed[i], reversed[j] = reversed[j], reversed[i]
			}
			require.Equal(t, tt.want, subscription.Merge(reversed...))
		})
	}
}

// TestOneUserTwoCustomers follows a user who subscribed twice, under two Stripe customers.
func TestOneUserTwoCustomers(t *testing.T) {
	t.Parallel()
	rules := subscription.DefaultRules()
	rules.Plans = map[string][]string{teamItem().price: {"team"}}

	first := newHistory(t, "cus_First1", apiV2024)
	first.customerCreated(t0, map[string]string{"user_id": "u_42"})
	s := proSub("sub_1First")
	h := first
	h.created(t0, s)
	s.status, s.endedAt = "canceled", t0+month
	h.deleted(t0+month, s)

	second := newHistory(t, "cus_Second2", apiBasil)
	second.customerCreated(t0+2*month, nil)
	s2 := proSub("sub_1Second")
	s2.items = []item{teamItem()}
	s2.status = "past_due"
	second.created(t0+2*month, s2)
	second.checkout(t, t0+2*month+1, "checkout.session.completed", "cs_test_Second", "u_42", s2.id, "subscription")

	st1 := subscription.Derive("cus_First1", decodeAll(t, first.raws), rules)
	st2 := subscription.Derive("cus_Second2", decodeAll(t, second.raws), rules)
	require.Equal(t, "u_42", st1.UserID)
	require.Equal(t, "u_42", st2.UserID)
	require.Equal(t, subscription.Entitlement{Status: "canceled", Features: []string{}}, st1.Entitlement(rules))
	require.Equal(t, subscription.Entitlement{Premium: true, Status: "past_due", Features: []string{"team"}}, st2.Entitlement(rules))
	require.Equal(t, subscription.Entitlement{Premium: true, Status: "past_due", Features: []string{"team"}},
		subscription.Merge(st1.Entitlement(rules), st2.Entitlement(rules)))

	// Derive skips events of another customer mixed into a history.
	mixed := append(decodeAll(t, first.raws), decodeAll(t, second.raws)...)
	require.Equal(t, st1, subscription.Derive("cus_First1", mixed, rules))
}
