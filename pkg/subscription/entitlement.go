package subscription

import (
	"math"
	"slices"
)

// Entitlement is the answer for one customer, or for one user after Merge.
type Entitlement struct {
	Premium  bool
	Status   string   // the best subscription status, StatusNone without subscriptions
	Features []string // sorted; [] (never nil) when nothing grants access
	// Limits maps a limit name to its sum over the granting subscriptions' items (and the
	// grants added with WithGrants); nil when nothing gives a limit.
	Limits map[string]int64
}

// DefaultFeature is what a granting subscription gives when none of its price and product ids is
// in Rules.Plans.
const DefaultFeature = "premium"

// Entitlement applies rules to the state. Premium is true when any subscription grants access
// (Grants). Status is the best status among the subscriptions in the order active, trialing,
// past_due, unpaid, paused, incomplete, incomplete_expired, canceled (then statuses Stripe may add),
// or StatusNone when there is none. Features is the sorted union of the granting subscriptions'
// features, where a subscription's features are the union of rules.Plans[id] over its price and
// product ids, or [DefaultFeature] when none of those ids is in rules.Plans; while (and only while)
// some subscription grants access, the Stripe Entitlements lookup keys in s.EntitlementFeatures
// are added too. Limits is, per limit name, the sum over the granting subscriptions' items of
// what rules.Limits gives the item's price (or, when its price is not listed, its product), a
// "quantity" limit counting the item's quantity; sums saturate at math.MaxInt64.
func (s State) Entitlement(rules Rules) Entitlement {
	ent := Entitlement{Status: StatusNone, Features: []string{}, Limits: map[string]int64{}}
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		if betterStatus(sub.Status, ent.Status) {
			ent.Status = sub.Status
		}
		if !Grants(sub.Status, rules) {
			continue
		}
		ent.Premium = true
		ent.Features = appendFeatures(ent.Features, sub, rules.Plans)
		addItemLimits(ent.Limits, sub.Items, rules.Limits)
	}
	if ent.Premium {
		ent.Features = append(ent.Features, s.EntitlementFeatures...)
	}
	slices.Sort(ent.Features)
	ent.Features = slices.Compact(ent.Features)
	ent.Limits = nilIfEmpty(ent.Limits)
	return ent
}

func nilIfEmpty(m map[string]int64) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	return m
}

func appendFeatures(features []string, sub *Subscription, plans map[string][]string) []string {
	listed := false
	for _, ids := range [2][]string{sub.PriceIDs, sub.ProductIDs} {
		for _, id := range ids {
			if f, ok := plans[id]; ok {
				listed = true
				features = append(features, f...)
			}
		}
	}
	if !listed {
		features = append(features, DefaultFeature)
	}
	return features
}

// addItemLimits adds the items' limits to sums. An item's limits are its price's entry, else its
// product's: a price is the more precise of the two, and adding both would count an item listed
// under both twice.
func addItemLimits(sums map[string]int64, items []Item, limits map[string]map[string]Limit) {
	if len(limits) == 0 {
		return
	}
	for _, it := range items {
		ls, ok := limits[it.PriceID]
		if !ok || it.PriceID == "" {
			ls = limits[it.ProductID]
		}
		for name, l := range ls {
			sums[name] = addSat(sums[name], l.of(it.Quantity))
		}
	}
}

// addSat is a+b for non-negative a and b, saturating at math.MaxInt64 (a quantity of a billion
// seats times a few items must not wrap to a negative limit).
func addSat(a, b int64) int64 {
	if b > math.MaxInt64-a {
		return math.MaxInt64
	}
	return a + b
}

// Merge combines the entitlements of a user's customers: Premium if any is, the best Status
// (StatusNone when there are none), the sorted union of Features ([] when empty) and the sum of
// Limits per name (nil when none). The result does not depend on the order of ents.
func Merge(ents ...Entitlement) Entitlement {
	out := Entitlement{Status: StatusNone, Features: []string{}, Limits: map[string]int64{}}
	for _, e := range ents {
		out.Premium = out.Premium || e.Premium
		if betterStatus(e.Status, out.Status) {
			out.Status = e.Status
		}
		out.Features = append(out.Features, e.Features...)
		for name, n := range e.Limits {
			out.Limits[name] = addSat(out.Limits[name], max(n, 0))
		}
	}
	slices.Sort(out.Features)
	out.Features = slices.Compact(out.Features)
	out.Limits = nilIfEmpty(out.Limits)
	return out
}

// Grant is what an operator's grant gives on top of the subscriptions: features and limits.
type Grant struct {
	Features []string
	Limits   map[string]int64
}

// WithGrants is e with the given active grants added: their features join Features (Premium
// becomes true when a grant's features include DefaultFeature, and only then: a grant of
// "export" alone gives that feature, not premium) and their limits add to Limits. Status is left
// as the subscriptions make it. Which grants are active is the caller's to decide (the read
// model writes the answer with the grants active at that moment); the result does not depend on
// the order of grants, and neither e nor grants is modified.
func WithGrants(e Entitlement, grants ...Grant) Entitlement {
	out := Entitlement{Premium: e.Premium, Status: e.Status, Features: slices.Clone(e.Features), Limits: make(map[string]int64, len(e.Limits))}
	if out.Status == "" {
		out.Status = StatusNone
	}
	for name, n := range e.Limits {
		out.Limits[name] = n
	}
	for _, g := range grants {
		for _, f := range g.Features {
			out.Premium = out.Premium || f == DefaultFeature
			out.Features = append(out.Features, f)
		}
		for name, n := range g.Limits {
			out.Limits[name] = addSat(out.Limits[name], max(n, 0))
		}
	}
	slices.Sort(out.Features)
	if out.Features = slices.Compact(out.Features); out.Features == nil {
		out.Features = []string{}
	}
	out.Limits = nilIfEmpty(out.Limits)
	return out
}
