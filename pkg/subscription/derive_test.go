package subscription_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/subscription"
)

const cus = "cus_QkX9v2Lr8TnB4e"

// The catalog of the tests: a pro and a team plan.
func proItem() item {
	return item{id: "si_QkXaPro", price: "price_1PrOmonthly", product: "prod_QkPro", amount: 1900}
}

func teamItem() item {
	return item{id: "si_QkXbTeam", price: "price_1TeAmmonthly", product: "prod_QkTeam", amount: 4900}
}

// proSub is a subscription to pro that started at t0 and is active.
func proSub(id string) sub {
	return sub{id: id, status: "active", items: []item{proItem()}, created: t0, periodStart: t0,
		periodEnd: t0 + month, latestInvoice: "in_" + id[4:] + "1"}
}

func unix(sec int64) *time.Time {
	t := time.Unix(sec, 0).UTC()
	return &t
}

type wantSub struct{ id, status string }

// typeOf is the type of the event with the given id, "" when there is none.
func typeOf(events []subscription.Event, id string) string {
	for _, e := range events {
		if e.ID == id {
			return e.Type
		}
	}
	return ""
}

func TestDerive(t *testing.T) {
	t.Parallel()
	premium := subscription.Entitlement{Premium: true, Status: "active", Features: []string{"premium"}}
	tests := []struct {
		name  string
		api   string // apiV2024 when empty
		build func(t *testing.T, h *history)
		rules func(r *subscription.Rules)
		// shuffle delivers the events in another order than they were created.
		shuffle     func(raws [][]byte) [][]byte
		want        subscription.Entitlement
		wantUser    string
		wantDeleted bool
		wantSubs    []wantSub
		check       func(t *testing.T, st subscription.State, events []subscription.Event)
	}{
		{
			name: "checkout makes an incomplete subscription active in the same second",
			build: func(t *testing.T, h *history) {
				h.customerCreated(t0, nil)
				s := proSub("sub_1QkA")
				s.status = "incomplete"
				h.created(t0, s)
				h.invoice(t, t0, "invoice.created", "in_QkA1", s.id)
				h.invoice(t, t0, "invoice.finalized", "in_QkA1", s.id)
				h.invoice(t, t0+1, "invoice.paid", "in_QkA1", s.id)
				s.status = "active"
				h.updated(t0+1, s)
				h.checkout(t, t0+2, "checkout.session.completed", "cs_test_QkA", "u_42", s.id, "subscription")
			},
			want: premium, wantUser: "u_42", wantSubs: []wantSub{{"sub_1QkA", "active"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Equal(t, subscription.Subscription{
					ID: "sub_1QkA", CustomerID: cus, Status: "active",
					PriceIDs: []string{proItem().price}, ProductIDs: []string{proItem().product},
					Items:            []subscription.Item{{PriceID: proItem().price, ProductID: proItem().product, Quantity: 1}},
					CurrentPeriodEnd: unix(t0 + month),
				}, st.Subscriptions[0])
				require.Equal(t, t0+2, st.LastEventCreated)
			},
		},
		{
			name: "trial then active",
			build: func(t *testing.T, h *history) {
				h.customerCreated(t0, map[string]string{"user_id": "u_7"})
				s := proSub("sub_1QkB")
				s.status, s.trialStart, s.trialEnd, s.periodEnd = "trialing", t0, t0+14*day, t0+14*day
				h.created(t0, s)
				s.status, s.periodStart, s.periodEnd, s.latestInvoice = "active", t0+14*day, t0+14*day+month, "in_QkB2"
				h.invoice(t, t0+14*day, "invoice.created", "in_QkB2", s.id)
				h.updated(t0+14*day, s)
			},
			want: premium, wantUser: "u_7", wantSubs: []wantSub{{"sub_1QkB", "active"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Equal(t, unix(t0+14*day), st.Subscriptions[0].TrialEnd)
				require.Equal(t, unix(t0+14*day+month), st.Subscriptions[0].CurrentPeriodEnd)
			},
		},
		{
			name: "trialing grants",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkC")
				s.status, s.trialStart, s.trialEnd = "trialing", t0, t0+7*day
				h.created(t0, s)
			},
			want:     subscription.Entitlement{Premium: true, Status: "trialing", Features: []string{"premium"}},
			wantSubs: []wantSub{{"sub_1QkC", "trialing"}},
		},
		{
			name: "trial without payment method ends paused",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkD")
				s.status, s.trialStart, s.trialEnd = "trialing", t0, t0+7*day
				h.created(t0, s)
				s.status = "paused"
				h.updated(t0+7*day, s)
				h.subscription(t0+7*day, "customer.subscription.paused", s)
			},
			want:     subscription.Entitlement{Status: "paused", Features: []string{}},
			wantSubs: []wantSub{{"sub_1QkD", "paused"}},
		},
		{
			name: "paused trial resumed",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkE")
				s.status, s.trialStart, s.trialEnd = "trialing", t0, t0+7*day
				h.created(t0, s)
				s.status = "paused"
				h.updated(t0+7*day, s)
				h.subscription(t0+7*day, "customer.subscription.paused", s)
				s.status, s.periodStart, s.periodEnd = "active", t0+9*day, t0+9*day+month
				h.updated(t0+9*day, s)
				h.subscription(t0+9*day, "customer.subscription.resumed", s)
			},
			want: premium, wantSubs: []wantSub{{"sub_1QkE", "active"}},
		},
		{
			name: "active then past_due keeps access",
			build: func(t *testing.T, h *history) {
				s := proSub("sub_1QkF")
				h.created(t0, s)
				s.status, s.periodStart, s.periodEnd, s.latestInvoice = "past_due", t0+month, t0+2*month, "in_QkF2"
				h.invoice(t, t0+month, "invoice.payment_failed", "in_QkF2", s.id)
				h.updated(t0+month, s)
			},
			want:     subscription.Entitlement{Premium: true, Status: "past_due", Features: []string{"premium"}},
			wantSubs: []wantSub{{"sub_1QkF", "past_due"}},
		},
		{
			name:  "past_due without access when PAST_DUE_GRANTS=false",
			rules: func(r *subscription.Rules) { r.PastDueGrants = false },
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkG")
				h.created(t0, s)
				s.status = "past_due"
				h.updated(t0+month, s)
			},
			want:     subscription.Entitlement{Status: "past_due", Features: []string{}},
			wantSubs: []wantSub{{"sub_1QkG", "past_due"}},
		},
		{
			name: "active, past_due, then unpaid",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkH")
				h.created(t0, s)
				s.status = "past_due"
				h.updated(t0+month, s)
				s.status = "unpaid"
				h.updated(t0+month+21*day, s)
			},
			want:     subscription.Entitlement{Status: "unpaid", Features: []string{}},
			wantSubs: []wantSub{{"sub_1QkH", "unpaid"}},
		},
		{
			name: "active, past_due, then deleted",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkI")
				h.created(t0, s)
				s.status = "past_due"
				h.updated(t0+month, s)
				s.status, s.canceledAt, s.endedAt = "canceled", t0+month+14*day, t0+month+14*day
				h.deleted(t0+month+14*day, s)
			},
			want:     subscription.Entitlement{Status: "canceled", Features: []string{}},
			wantSubs: []wantSub{{"sub_1QkI", "canceled"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Equal(t, unix(t0+month+14*day), st.Subscriptions[0].EndedAt)
			},
		},
		{
			name: "cancel at period end keeps access until the period ends",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkJ")
				h.created(t0, s)
				s.cancelAtPeriodEnd, s.cancelAt, s.canceledAt = true, t0+month, t0+10*day
				h.updated(t0+10*day, s)
			},
			want: premium, wantSubs: []wantSub{{"sub_1QkJ", "active"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.True(t, st.Subscriptions[0].CancelAtPeriodEnd)
				require.Nil(t, st.Subscriptions[0].EndedAt)
			},
		},
		{
			name: "cancel at period end then deleted",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkK")
				h.created(t0, s)
				s.cancelAtPeriodEnd, s.cancelAt, s.canceledAt = true, t0+month, t0+10*day
				h.updated(t0+10*day, s)
				s.status, s.endedAt = "canceled", t0+month
				h.deleted(t0+month, s)
			},
			want:     subscription.Entitlement{Status: "canceled", Features: []string{}},
			wantSubs: []wantSub{{"sub_1QkK", "canceled"}},
		},
		{
			name: "immediate cancel",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkL")
				h.created(t0, s)
				s.status, s.canceledAt, s.endedAt = "canceled", t0+3*day, t0+3*day
				h.deleted(t0+3*day, s)
			},
			want:     subscription.Entitlement{Status: "canceled", Features: []string{}},
			wantSubs: []wantSub{{"sub_1QkL", "canceled"}},
		},
		{
			name: "a deleted event cancels even when its object says otherwise",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkM")
				h.created(t0, s)
				h.deleted(t0+3*day, s) // status still active in the object
			},
			want:     subscription.Entitlement{Status: "canceled", Features: []string{}},
			wantSubs: []wantSub{{"sub_1QkM", "canceled"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Equal(t, unix(t0+3*day), st.Subscriptions[0].EndedAt)
			},
		},
		{
			name: "upgrade to another price",
			rules: func(r *subscription.Rules) {
				r.Plans = map[string][]string{proItem().price: {"pro"}, teamItem().price: {"pro", "team"}}
			},
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkN")
				h.created(t0, s)
				s.items = []item{{id: proItem().id, price: teamItem().price, product: teamItem().product, amount: teamItem().amount}}
				h.updated(t0+5*day, s)
			},
			want:     subscription.Entitlement{Premium: true, Status: "active", Features: []string{"pro", "team"}},
			wantSubs: []wantSub{{"sub_1QkN", "active"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Equal(t, []string{teamItem().price}, st.Subscriptions[0].PriceIDs)
				require.Equal(t, []string{teamItem().product}, st.Subscriptions[0].ProductIDs)
			},
		},
		{
			name: "customer deleted cancels every subscription",
			build: func(_ *testing.T, h *history) {
				h.customerCreated(t0, map[string]string{"user_id": "u_9"})
				h.created(t0, proSub("sub_1QkO"))
				s := proSub("sub_1QkP")
				s.status, s.trialEnd = "trialing", t0+30*day
				h.created(t0+day, s)
				h.customerDeleted(t0 + 2*day)
			},
			want: subscription.Entitlement{Status: "canceled", Features: []string{}}, wantUser: "u_9", wantDeleted: true,
			wantSubs: []wantSub{{"sub_1QkO", "canceled"}, {"sub_1QkP", "canceled"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				for _, s := range st.Subscriptions {
					require.Equal(t, unix(t0+2*day), s.EndedAt)
				}
			},
		},
		{
			name: "customer deleted with its subscriptions in the same second",
			build: func(t *testing.T, h *history) {
				s := proSub("sub_1QkQ")
				h.created(t0, s)
				at := t0 + 2*day
				s.status, s.canceledAt, s.endedAt = "canceled", at, at
				h.deleted(at, s)
				h.customerDeleted(at)
				h.invoice(t, at, "invoice.voided", "in_QkQ9", s.id)
			},
			want: subscription.Entitlement{Status: "canceled", Features: []string{}}, wantDeleted: true,
			wantSubs: []wantSub{{"sub_1QkQ", "canceled"}},
			check: func(t *testing.T, st subscription.State, events []subscription.Event) {
				require.Contains(t, []string{"customer.deleted", "customer.subscription.deleted"}, typeOf(events, st.LastEventID))
			},
		},
		{
			name: "incomplete then incomplete_expired",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkR")
				s.status = "incomplete"
				h.created(t0, s)
				s.status, s.endedAt = "incomplete_expired", t0+23*3600
				h.updated(t0+23*3600, s)
			},
			want:     subscription.Entitlement{Status: "incomplete_expired", Features: []string{}},
			wantSubs: []wantSub{{"sub_1QkR", "incomplete_expired"}},
		},
		{
			name: "an old canceled and a new active subscription",
			build: func(_ *testing.T, h *history) {
				old := proSub("sub_1QkZold")
				h.created(t0, old)
				old.status, old.endedAt = "canceled", t0+month
				h.deleted(t0+month, old)
				s := proSub("sub_1QkAnew")
				s.created, s.periodStart, s.periodEnd = t0+6*month, t0+6*month, t0+7*month
				h.created(t0+6*month, s)
			},
			want:     premium,
			wantSubs: []wantSub{{"sub_1QkAnew", "active"}, {"sub_1QkZold", "canceled"}},
		},
		{
			name: "user id changed on customer.updated",
			build: func(_ *testing.T, h *history) {
				h.customerCreated(t0, map[string]string{"user_id": "u_old", "plan": "x"})
				h.customerUpdated(t0+day, map[string]string{"user_id": "u_new", "plan": "x"})
				h.created(t0, proSub("sub_1QkS"))
			},
			want: premium, wantUser: "u_new", wantSubs: []wantSub{{"sub_1QkS", "active"}},
		},
		{
			name:  "user id under a custom metadata key",
			rules: func(r *subscription.Rules) { r.UserIDMetadataKey = "app_user" },
			build: func(_ *testing.T, h *history) {
				h.customerCreated(t0, map[string]string{"user_id": "not_this", "app_user": "u_custom"})
			},
			want: subscription.Entitlement{Status: "none", Features: []string{}}, wantUser: "u_custom",
		},
		{
			name: "user known only from checkout's client_reference_id",
			build: func(t *testing.T, h *history) {
				h.customerCreated(t0, map[string]string{"source": "checkout"})
				h.created(t0, proSub("sub_1QkT"))
				h.checkout(t, t0+1, "checkout.session.completed", "cs_test_QkT", "u_from_checkout", "sub_1QkT", "subscription")
				h.checkout(t, t0+2, "checkout.session.completed", "cs_test_QkT2", "u_payment_mode", "", "payment")
			},
			want: premium, wantUser: "u_from_checkout", wantSubs: []wantSub{{"sub_1QkT", "active"}},
		},
		{
			name: "user from an async checkout payment, metadata still wins when set",
			build: func(t *testing.T, h *history) {
				h.checkout(t, t0, "checkout.session.async_payment_succeeded", "cs_test_QkU", "u_checkout", "sub_1QkU", "subscription")
				h.customerUpdated(t0-day, map[string]string{"user_id": "u_meta"})
			},
			want: subscription.Entitlement{Status: "none", Features: []string{}}, wantUser: "u_meta",
		},
		{
			name: "subscription events arrive before the older customer.created",
			build: func(_ *testing.T, h *history) {
				h.customerCreated(t0, map[string]string{"user_id": "u_early"})
				s := proSub("sub_1QkV")
				s.status = "incomplete"
				h.created(t0+1, s)
				s.status = "active"
				h.updated(t0+2, s)
			},
			shuffle: func(raws [][]byte) [][]byte { return [][]byte{raws[2], raws[1], raws[0]} },
			want:    premium, wantUser: "u_early", wantSubs: []wantSub{{"sub_1QkV", "active"}},
		},
		{
			name: "pause_collection is reported and keeps an active subscription granting",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkW")
				h.created(t0, s)
				s.pause = &pause{behavior: "void", resumesAt: t0 + 2*month}
				h.updated(t0+day, s)
			},
			want: premium, wantSubs: []wantSub{{"sub_1QkW", "active"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Equal(t, &subscription.PauseCollection{Behavior: "void", ResumesAt: unix(t0 + 2*month)},
					st.Subscriptions[0].PauseCollection)
			},
		},
		{
			name: "pause_collection lifted",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkX")
				s.pause = &pause{behavior: "keep_as_draft"}
				h.created(t0, s)
				s.pause = nil
				h.updated(t0+day, s)
			},
			want: premium, wantSubs: []wantSub{{"sub_1QkX", "active"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Nil(t, st.Subscriptions[0].PauseCollection)
			},
		},
		{
			name: "same second: created, updated to active, updated again, by previous_attributes",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkY")
				s.status = "incomplete"
				h.created(t0, s)
				s.status = "active"
				h.updated(t0, s)
				s.metadata = map[string]string{"seats": "3"}
				h.updated(t0, s)
			},
			want: premium, wantSubs: []wantSub{{"sub_1QkY", "active"}},
		},
		{
			name: "same second: past_due then active again then cancel requested",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1QkZ")
				h.created(t0, s)
				at := t0 + month
				s.status, s.latestInvoice = "past_due", "in_QkZ2"
				h.updated(at, s)
				s.status = "active"
				h.updated(at, s)
				s.cancelAtPeriodEnd, s.cancelAt, s.canceledAt = true, t0+month, at
				h.updated(at, s)
				s.status = "past_due"
				h.updated(at, s)
			},
			want:     subscription.Entitlement{Premium: true, Status: "past_due", Features: []string{"premium"}},
			wantSubs: []wantSub{{"sub_1QkZ", "past_due"}},
		},
		{
			name: "same second: update and deletion, deletion last",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1Qka")
				h.created(t0, s)
				s.status, s.canceledAt, s.endedAt = "canceled", t0+day, t0+day
				h.deleted(t0+day, s)
				s.cancelAtPeriodEnd = true // a late echo of an update, same second
				h.updated(t0+day, s)
			},
			want:     subscription.Entitlement{Status: "canceled", Features: []string{}},
			wantSubs: []wantSub{{"sub_1Qka", "canceled"}},
			check: func(t *testing.T, st subscription.State, events []subscription.Event) {
				require.Equal(t, "customer.subscription.deleted", typeOf(events, st.LastEventID))
			},
		},
		{
			name: "2025-03-31.basil: current_period_end on the items",
			api:  apiBasil,
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1Qkb")
				h.created(t0, s)
				s.periodStart, s.periodEnd, s.latestInvoice = t0+month, t0+2*month, "in_Qkb2"
				h.updated(t0+month, s)
			},
			want: premium, wantSubs: []wantSub{{"sub_1Qkb", "active"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Equal(t, unix(t0+2*month), st.Subscriptions[0].CurrentPeriodEnd)
			},
		},
		{
			name: "2020-03-02: plan on items, expanded product",
			api:  apiOld,
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1Qkc")
				s.productExpanded = true
				h.created(t0, s)
			},
			want: premium, wantSubs: []wantSub{{"sub_1Qkc", "active"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Equal(t, []string{proItem().product}, st.Subscriptions[0].ProductIDs)
				require.Equal(t, unix(t0+month), st.Subscriptions[0].CurrentPeriodEnd)
			},
		},
		{
			name: "PLANS_FILE features by price and by product",
			rules: func(r *subscription.Rules) {
				r.Plans = map[string][]string{proItem().price: {"export", "pro"}, teamItem().product: {"team"}}
			},
			build: func(_ *testing.T, h *history) {
				h.created(t0, proSub("sub_1Qkd"))
				s := proSub("sub_1Qke")
				s.items = []item{teamItem()}
				h.created(t0, s)
				s = proSub("sub_1Qkf")
				s.items = []item{{id: "si_other", price: "price_unlisted", product: "prod_unlisted", amount: 100}}
				h.created(t0, s)
				s = proSub("sub_1Qkg")
				s.items = []item{{id: "si_gone", price: "price_gone", product: teamItem().product, amount: 100}}
				s.status = "canceled"
				h.created(t0, s)
			},
			want: subscription.Entitlement{Premium: true, Status: "active", Features: []string{"export", "premium", "pro", "team"}},
			wantSubs: []wantSub{{"sub_1Qkd", "active"}, {"sub_1Qke", "active"}, {"sub_1Qkf", "active"},
				{"sub_1Qkg", "canceled"}},
		},
		{
			name: "entitlement summary lookup keys join the features of a granting subscription",
			build: func(_ *testing.T, h *history) {
				h.created(t0, proSub("sub_1Qkh"))
				h.entitlementSummary(t0, "api-access")
				h.entitlementSummary(t0+day, "api-access", "journeys")
			},
			want:     subscription.Entitlement{Premium: true, Status: "active", Features: []string{"api-access", "journeys", "premium"}},
			wantSubs: []wantSub{{"sub_1Qkh", "active"}},
			check: func(t *testing.T, st subscription.State, _ []subscription.Event) {
				require.Equal(t, []string{"api-access", "journeys"}, st.EntitlementFeatures)
			},
		},
		{
			name: "entitlement summary alone grants nothing",
			build: func(_ *testing.T, h *history) {
				s := proSub("sub_1Qki")
				s.status = "unpaid"
				h.created(t0, s)
				h.entitlementSummary(t0, "journeys")
			},
			want:     subscription.Entitlement{Status: "unpaid", Features: []string{}},
			wantSubs: []wantSub{{"sub_1Qki", "unpaid"}},
		},
		{
			name: "same second entitlement summaries chain by previous_attributes",
			build: func(_ *testing.T, h *history) {
				h.created(t0, proSub("sub_1Qkj"))
				h.entitlementSummary(t0+day, "a")
				h.entitlementSummary(t0+day, "a", "b")
				h.entitlementSummary(t0+day, "b")
				h.entitlementSummary(t0+day, "b", "c")
			},
			want:     subscription.Entitlement{Premium: true, Status: "active", Features: []string{"b", "c", "premium"}},
			wantSubs: []wantSub{{"sub_1Qkj", "active"}},
		},
		{
			name:  "empty history",
			build: func(*testing.T, *history) {},
			want:  subscription.Entitlement{Status: "none", Features: []string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := tt.api
			if api == "" {
				api = apiV2024
			}
			h := newHistory(t, cus, api)
			tt.build(t, h)
			rules := subscription.DefaultRules()
			if tt.rules != nil {
				tt.rules(&rules)
			}
			raws := h.raws
			if tt.shuffle != nil {
				raws = tt.shuffle(slices.Clone(raws))
			}
			events := decodeAll(t, raws)
			st := subscription.Derive(cus, events, rules)

			require.Equal(t, tt.want, st.Entitlement(rules))
			require.Equal(t, cus, st.CustomerID)
			require.Equal(t, tt.wantUser, st.UserID)
			require.Equal(t, tt.wantDeleted, st.Deleted)
			var subs []wantSub
			for _, s := range st.Subscriptions {
				subs = append(subs, wantSub{s.ID, s.Status})
			}
			require.Equal(t, tt.wantSubs, subs)
			var latest int64
			for _, e := range events {
				latest = max(latest, e.Created)
			}
			require.Equal(t, latest, st.LastEventCreated)
			require.Equal(t, latest != 0, typeOf(events, st.LastEventID) != "")
			if tt.check != nil {
				tt.check(t, st, events)
			}
			reversed := slices.Clone(events)
			slices.Reverse(reversed)
			require.Equal(t, st, subscription.Derive(cus, append(reversed, events...), rules),
				"reversed and duplicated delivery")
		})
	}
}
