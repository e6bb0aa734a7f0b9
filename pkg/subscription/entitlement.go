package subscription

import "slices"

// Entitlement is the answer for one customer, or for one user after Merge.
type Entitlement struct {
	Premium  bool
	Status   string   // the best subscription status, StatusNone without subscriptions
	Features []string // sorted; [] (never nil) when nothing grants access
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
// are added too.
func (s State) Entitlement(rules Rules) Entitlement {
	ent := Entitlement{Status: StatusNone, Features: []string{}}
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
	}
	if ent.Premium {
		ent.Features = append(ent.Features, s.EntitlementFeatures...)
	}
	slices.Sort(ent.Features)
	ent.Features = slices.Compact(ent.Features)
	return ent
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

// Merge combines the entitlements of a user's customers: Premium if any is, the best Status
// (StatusNone when there are none), and the sorted union of Features ([] when empty). The result
// does not depend on the order of ents.
func Merge(ents ...Entitlement) Entitlement {
	out := Entitlement{Status: StatusNone, Features: []string{}}
	for _, e := range ents {
		out.Premium = out.Premium || e.Premium
		if betterStatus(e.Status, out.Status) {
			out.Status = e.Status
		}
		out.Features = append(out.Features, e.Features...)
	}
	slices.Sort(out.Features)
	out.Features = slices.Compact(out.Features)
	return out
}
