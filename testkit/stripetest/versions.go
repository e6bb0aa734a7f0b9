package stripetest

import (
	"strings"
	"time"
)

// APIVersions are the API versions SubscriptionIn and CheckoutIn render, oldest first: one per
// change of the subscription and Checkout Session shapes that Tollgate reads or must skip, from
// 2014 to the newest monthly release of 2026. From 2025 the shapes follow stripe/openapi's spec
// and fixtures3.json of each version (pkg/testdata/stripe-openapi/README.md names the commits;
// TestShapesFollowTheSpec holds the builders to them). The endive releases are rendered as the
// newest spec available here (2026-07-29.dahlia): no endive spec was at hand.
func APIVersions() []string {
	return []string{
		"2014-11-05",        // a top-level plan, no items
		"2017-08-15",        // items with plan, and the top-level plan beside them
		"2018-02-28",        // plan.product
		"2020-08-27",        // items with price; the top-level plan is gone
		"2023-10-16",        // stripe-go v76's
		"2025-03-31.basil",  // current_period_* move to the items; the subscription's discount is gone
		"2025-04-30.basil",  // (no billing_mode yet in the GA spec; a string billing_mode was never in it)
		"2025-06-30.basil",  // billing_mode an object {type, flexible, updated_at}
		"2025-09-30.clover", // Discount.source.coupon (no customer_account yet)
		"2025-12-15.clover", // customer_account beside customer (Accounts v2)
		"2026-03-25.dahlia", // cancellation reason canceled_by_retention_policy; Checkout ui_mode renamed
		"2026-09-30.endive", // no spec here; billing_cycle_anchor stays an integer on the object
		"2026-11-18.endive", // the newest monthly release
	}
}

// AccountsV2 reports whether objects of version name their owner in customer_account (an
// Accounts v2 acct_ id, customer then null): from 2025-12-15.clover, where the spec has it.
func AccountsV2(version string) bool { return atLeast(version, "2025-12-15") }

// atLeast reports whether version is v or later (versions compare by their date).
func atLeast(version, v string) bool { return version[:10] >= v[:10] }

// SubscriptionIn is a data.object of a subscription of customer with one price, in the shape of
// API version version (one of APIVersions, or any "YYYY-MM-DD[.name]"): where each version puts
// the price (a top-level plan, items with plan, items with price) and current_period_end (the
// subscription, or from basil its items), and the fields each newer version added or reshaped
// (billing_mode, discounts, customer_account, cancellation_details). billing_cycle_anchor is
// the integer every spec has on the object (endive's object form is a request parameter's).
// periodEnd is current_period_end. Where AccountsV2, an empty customer renders customer: null
// and customerAccount as customer_account.
func SubscriptionIn(version, id, customer, customerAccount, status, price string, periodEnd int64) map[string]any {
	start := periodEnd - 30*24*3600
	plan := map[string]any{"id": price, "object": "plan", "interval": "month", "amount": 1500, "currency": "usd"}
	if atLeast(version, "2018-02-05") {
		plan["product"] = "prod_test"
	}
	s := map[string]any{
		"id": id, "object": "subscription", "status": status, "cancel_at_period_end": false,
		"customer": customer, "trial_end": nil, "ended_at": nil, "canceled_at": nil, "metadata": map[string]any{},
		"billing_cycle_anchor": start, "start_date": start, "created": start,
	}
	if customer == "" {
		s["customer"] = nil
	}
	item := map[string]any{"id": "si_" + strings.TrimPrefix(id, "sub_"), "object": "subscription_item", "quantity": 1}
	switch {
	case !atLeast(version, "2016-07-06"): // before subscription items
		s["plan"] = plan
		s["quantity"] = 1
	case !atLeast(version, "2018-02-05"):
		s["plan"] = plan
		item["plan"] = plan
	case !atLeast(version, "2019-03-14"):
		s["plan"] = plan
		item["plan"] = plan
	default:
		item["plan"] = plan
		item["price"] = map[string]any{"id": price, "object": "price", "product": "prod_test", "unit_amount": 1500,
			"recurring": map[string]any{"interval": "month"}}
	}
	if atLeast(version, "2016-07-06") {
		s["items"] = map[string]any{"object": "list", "has_more": false, "total_count": 1,
			"url": "/v1/subscription_items?subscription=" + id, "data": []any{item}}
	}
	if atLeast(version, "2025-03-31") {
		item["current_period_start"], item["current_period_end"] = start, periodEnd
	} else {
		s["current_period_start"], s["current_period_end"] = start, periodEnd
	}
	if atLeast(version, "2025-06-30") {
		s["billing_mode"] = map[string]any{"type": "flexible", "flexible": map[string]any{"proration_discounts": "included"}, "updated_at": start}
	}
	if AccountsV2(version) {
		s["customer_account"] = nil
		if customerAccount != "" {
			s["customer_account"] = customerAccount
		}
	}
	switch {
	case atLeast(version, "2025-03-31"):
		// The subscription's discounts are expandable: ids unless expanded, and a webhook
		// expands nothing. Their source.coupon (clover) is on the Discount object only.
		s["discounts"] = []any{"di_" + strings.TrimPrefix(id, "sub_")}
	case atLeast(version, "2016-07-06"):
		s["discount"] = map[string]any{"object": "discount", "coupon": map[string]any{"id": "coupon_25off", "object": "coupon", "percent_off": 25}}
	}
	if status == "canceled" {
		s["ended_at"], s["canceled_at"] = periodEnd, periodEnd
		if atLeast(version, "2026-03-25") {
			s["cancellation_details"] = map[string]any{"reason": "canceled_by_retention_policy", "feedback": nil, "comment": nil}
		} else if atLeast(version, "2023-01-01") {
			s["cancellation_details"] = map[string]any{"reason": "cancellation_requested", "feedback": nil, "comment": nil}
		}
	}
	return s
}

// CheckoutIn is a completed subscription-mode Checkout Session in the shape of version: the
// user's clientReferenceID, the subscription it created (from basil Checkout creates it only
// after payment, so a session may name none: pass ""), ui_mode as dahlia renamed it
// ("hosted_page", earlier "hosted"), and where AccountsV2 customer_account beside a null customer.
func CheckoutIn(version, id, customer, customerAccount, clientReferenceID, subscriptionID string) map[string]any {
	c := map[string]any{
		"id": id, "object": "checkout.session", "mode": "subscription", "status": "complete",
		"payment_status": "paid", "customer": customer, "client_reference_id": clientReferenceID,
		"subscription": subscriptionID, "created": time.Now().Unix(),
	}
	for k, v := range map[string]string{"customer": customer, "client_reference_id": clientReferenceID, "subscription": subscriptionID} {
		if v == "" {
			c[k] = nil
		}
	}
	if atLeast(version, "2020-08-27") {
		c["ui_mode"] = "hosted"
	}
	if atLeast(version, "2026-03-25") {
		c["ui_mode"] = "hosted_page"
	}
	if AccountsV2(version) {
		c["customer_account"] = nil
		if customerAccount != "" {
			c["customer_account"] = customerAccount
		}
	}
	return c
}
