package subscription_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// TestEveryAPIVersion derives a checkout, a subscription's creation, an update and its
// cancellation in the shape of each API version from 2014 to 2026-11-18.endive, for a classic
// customer and (from 2025-12-15.clover, Accounts v2) a customer that is an Account with
// customer: null.
func TestEveryAPIVersion(t *testing.T) {
	t.Parallel()
	const periodEnd = int64(1795000000)
	for _, version := range stripetest.APIVersions() {
		customers := []struct{ customer, account string }{{customer: "cus_Ver"}}
		if stripetest.AccountsV2(version) {
			customers = append(customers, struct{ customer, account string }{account: "acct_1VerAccountsV2"})
		}
		for _, c := range customers {
			owner := c.customer + c.account
			t.Run(version+"/"+owner, func(t *testing.T) {
				t.Parallel()
				sub := func(status string) map[string]any {
					return stripetest.SubscriptionIn(version, "sub_1Ver", c.customer, c.account, status, "price_1Ver", periodEnd)
				}
				at := int64(1790000000)
				build := func(typ string, obj map[string]any) []byte {
					at++
					return stripetest.Event{ID: fmt.Sprintf("evt_%s_%d", strings.ReplaceAll(version, ".", "_"), at), Type: typ,
						Created: at, APIVersion: version, Object: obj}.JSON(t)
				}
				raws := [][]byte{
					build("checkout.session.completed", stripetest.CheckoutIn(version, "cs_test_1Ver", c.customer, c.account, "user_ver", "sub_1Ver")),
					build("customer.subscription.created", sub("incomplete")),
					build("customer.subscription.updated", sub("active")),
				}
				events := decodeAll(t, raws)
				for _, e := range events {
					require.Equal(t, owner, e.CustomerID, "event %s is routed to its customer", e.Type)
				}
				st := subscription.Derive(owner, events, subscription.DefaultRules())
				require.Equal(t, "user_ver", st.UserID)
				require.Len(t, st.Subscriptions, 1)
				s := st.Subscriptions[0]
				require.Equal(t, "active", s.Status)
				require.Equal(t, owner, s.CustomerID)
				require.Equal(t, []string{"price_1Ver"}, s.PriceIDs, "the price, from a top-level plan on the oldest versions")
				if version >= "2018-02-05" {
					require.Equal(t, []string{"prod_test"}, s.ProductIDs)
				}
				require.Equal(t, time.Unix(periodEnd, 0).UTC(), *s.CurrentPeriodEnd)
				require.True(t, st.Entitlement(subscription.DefaultRules()).Premium)

				events = append(events, decodeAll(t, [][]byte{build("customer.subscription.deleted", sub("canceled"))})...)
				st = subscription.Derive(owner, events, subscription.DefaultRules())
				require.Equal(t, "canceled", st.Subscriptions[0].Status)
				require.False(t, st.Entitlement(subscription.DefaultRules()).Premium)
			})
		}
	}
}

// TestShapesOutsideTheSpecAreTolerated feeds shapes that no stripe/openapi spec at hand gives
// (up to 2026-07-29.dahlia) but that were claimed for Stripe's objects, so that they cannot
// fail an event if Stripe does send them: billing_cycle_anchor as an object (endive's changelog
// makes the update and resume parameter an object, not the Subscription's field), billing_mode as
// a string (never in the GA spec), expanded discounts with source.coupon, and customer_account
// on a version before 2025-12-15.clover.
func TestShapesOutsideTheSpecAreTolerated(t *testing.T) {
	t.Parallel()
	const periodEnd = int64(1795000000)
	tests := map[string]struct {
		version string
		edit    func(s map[string]any)
		owner   string
	}{
		"billing_cycle_anchor an object": {version: "2026-11-18.endive", owner: "cus_Tol", edit: func(s map[string]any) {
			s["billing_cycle_anchor"] = map[string]any{"type": "timestamp", "timestamp": periodEnd - 30*86400}
		}},
		"billing_mode a string": {version: "2025-04-30.basil", owner: "cus_Tol", edit: func(s map[string]any) { s["billing_mode"] = "classic" }},
		"expanded discounts with source.coupon": {version: "2025-09-30.clover", owner: "cus_Tol", edit: func(s map[string]any) {
			s["discounts"] = []any{map[string]any{"id": "di_1Tol", "object": "discount",
				"source": map[string]any{"type": "coupon", "coupon": "coupon_25off"}}}
		}},
		"customer_account before the spec has it": {version: "2025-09-30.clover", owner: "acct_1TolEarly", edit: func(s map[string]any) {
			s["customer"], s["customer_account"] = nil, "acct_1TolEarly"
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := stripetest.SubscriptionIn(tt.version, "sub_1Tol", "cus_Tol", "", "active", "price_1Tol", periodEnd)
			tt.edit(s)
			raw := stripetest.Event{ID: "evt_tol", Type: "customer.subscription.updated", Created: 1790000000,
				APIVersion: tt.version, Object: s}.JSON(t)
			events := decodeAll(t, [][]byte{raw})
			require.Equal(t, tt.owner, events[0].CustomerID)
			st := subscription.Derive(tt.owner, events, subscription.DefaultRules())
			require.Len(t, st.Subscriptions, 1)
			require.Equal(t, "active", st.Subscriptions[0].Status)
			require.Equal(t, time.Unix(periodEnd, 0).UTC(), *st.Subscriptions[0].CurrentPeriodEnd)
		})
	}
}

// TestSnapshotEvents checks that snapshot events (an object read from the API) apply in order
// like the events they stand for.
func TestSnapshotEvents(t *testing.T) {
	t.Parallel()
	const version = "2026-11-18.endive"
	at := int64(1790000000)
	build := func(typ string, obj map[string]any) []byte {
		at++
		id := fmt.Sprintf("evt_snap_%d", at)
		if stripeevent.IsSnapshot(typ) {
			id = stripeevent.SnapshotIDPrefix + id
		}
		return stripetest.Event{ID: id, Type: typ, Created: at, APIVersion: version, Object: obj}.JSON(t)
	}
	sub := func(status string) map[string]any {
		return stripetest.SubscriptionIn(version, "sub_1Snap", "cus_Snap", "", status, "price_1Snap", 1795000000)
	}
	cus := func(md map[string]any) map[string]any {
		return map[string]any{"id": "cus_Snap", "object": "customer", "metadata": md}
	}
	tests := []struct {
		name       string
		raws       [][]byte
		wantStatus string // "" when no subscription
		wantUser   string
		wantGone   bool
	}{
		{name: "a subscription snapshot alone sets its state",
			raws:       [][]byte{build(stripeevent.SnapshotType("subscription"), sub("active"))},
			wantStatus: "active"},
		{name: "a later snapshot overrides an earlier event",
			raws: [][]byte{build("customer.subscription.created", sub("active")),
				build(stripeevent.SnapshotType("subscription"), sub("canceled"))},
			wantStatus: "canceled"},
		{name: "a later event overrides an earlier snapshot",
			raws: [][]byte{build(stripeevent.SnapshotType("subscription"), sub("trialing")),
				build("customer.subscription.updated", sub("past_due"))},
			wantStatus: "past_due"},
		{name: "a customer snapshot sets the user",
			raws: [][]byte{build("customer.created", cus(map[string]any{"user_id": "u_old"})),
				build(stripeevent.SnapshotType("customer"), cus(map[string]any{"user_id": "u_new"}))},
			wantUser: "u_new"},
		{name: "a snapshot of a deleted customer deletes it",
			raws: [][]byte{build("customer.subscription.created", sub("active")),
				build(stripeevent.SnapshotType("customer"), map[string]any{"id": "cus_Snap", "object": "customer", "deleted": true})},
			wantStatus: "canceled", wantGone: true},
		{name: "a completed checkout session snapshot maps the user",
			raws:     [][]byte{build(stripeevent.SnapshotType("checkout.session"), stripetest.CheckoutIn(version, "cs_1", "cus_Snap", "", "u_co", ""))},
			wantUser: "u_co"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := subscription.Derive("cus_Snap", decodeAll(t, tt.raws), subscription.DefaultRules())
			require.Equal(t, tt.wantUser, st.UserID)
			require.Equal(t, tt.wantGone, st.Deleted)
			if tt.wantStatus == "" {
				require.Empty(t, st.Subscriptions)
				return
			}
			require.Len(t, st.Subscriptions, 1)
			require.Equal(t, tt.wantStatus, st.Subscriptions[0].Status)
		})
	}
}

func TestSummaryHasMore(t *testing.T) {
	t.Parallel()
	data := make([]any, 10)
	for i := range data {
		data[i] = map[string]any{"id": fmt.Sprintf("ent_%d", i), "object": "entitlements.active_entitlement", "lookup_key": fmt.Sprintf("f%d", i)}
	}
	raw := stripetest.Event{ID: "evt_more", Type: "entitlements.active_entitlement_summary.updated", Created: 1790000000,
		Object: map[string]any{"object": "entitlements.active_entitlement_summary", "customer": "cus_M",
			"entitlements": map[string]any{"object": "list", "data": data, "has_more": true}}}.JSON(t)
	ev := decodeAll(t, [][]byte{raw})[0]
	require.True(t, ev.EntitlementSummary.HasMore)
	require.Len(t, ev.EntitlementSummary.LookupKeys, 10)
}
