package subscription

import (
	"cmp"
	"maps"
	"slices"
	"strings"
)

// Order sorts events in place into the one total order of a customer's history: by Created, then,
// among events of the same second, by the tie-break described in the package documentation. The
// result depends only on the set of events given, never on their input order. Events are expected
// to have distinct IDs (Derive removes duplicates before ordering). Order is the only function in
// Tollgate that orders events; everything that needs a history in order calls it.
func Order(events []Event) {
	orderAfter(nil, events)
}

// orderAfter is Order for events that come after done: done are the history's earlier events,
// each of an earlier second than every one of events (a checkpoint keeps only the last event of
// each followed object, which is all the tie-break reads of them). events end up in the order
// they have in Order(done + events); done is not modified.
func orderAfter(done, events []Event) {
	slices.SortFunc(events, compareCreatedID)
	all := events
	if len(done) > 0 {
		all = append(slices.Clone(done), events...)
	}
	for i := len(done); i < len(all); {
		j := i + 1
		for j < len(all) && all[j].Created == all[i].Created {
			j++
		}
		if j-i > 1 {
			orderSecond(all[:i], all[i:j])
		}
		i = j
	}
	if len(done) > 0 {
		copy(events, all[len(done):])
	}
}

func compareCreatedID(a, b Event) int {
	if c := cmp.Compare(a.Created, b.Created); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// objectKey names the Stripe object an event is about, for the events whose objects Order can
// follow from one state to the next. Other events have the zero key and are ordered on their own.
type objectKey struct {
	kind uint8
	id   string
}

const (
	objectNone uint8 = iota
	objectSubscription
	objectCustomer
	objectSummary
)

func keyOf(e *Event) objectKey {
	switch {
	case e.Subscription != nil:
		return objectKey{objectSubscription, e.Subscription.ID}
	case e.Customer != nil:
		return objectKey{objectCustomer, e.Customer.ID}
	case e.EntitlementSummary != nil:
		return objectKey{objectSummary, e.CustomerID}
	}
	return objectKey{}
}

// orderSecond orders group, the events of one second sorted by ID, after done, the events of
// earlier seconds already in their final order. Each object's events become a chain (see
// chainOrder); the chains, and the events that belong to no followed object, are then merged by
// taking, at each step, the chain head with the smallest (rank, ID).
func orderSecond(done, group []Event) {
	if !sharesObject(group) {
		// Every chain is one event long: the merge is a sort (the common case, e.g. a
		// subscription update with its invoice events).
		slices.SortFunc(group, func(a, b Event) int {
			if c := cmp.Compare(rank(a.Type), rank(b.Type)); c != 0 {
				return c
			}
			return strings.Compare(a.ID, b.ID)
		})
		return
	}
	n := len(group)
	tmp := slices.Clone(group)
	used := make([]bool, n)
	var chains [][]int
	for i := range tmp {
		if used[i] {
			continue
		}
		used[i] = true
		k := keyOf(&tmp[i])
		members := []int{i}
		if k.kind != objectNone {
			for j := i + 1; j < n; j++ {
				if !used[j] && keyOf(&tmp[j]) == k {
					used[j] = true
					members = append(members, j)
				}
			}
		}
		if len(members) > 1 {
			members = chainOrder(done, tmp, members, k)
		}
		chains = append(chains, members)
	}
	heads := make([]int, len(chains))
	for out := 0; out < n; out++ {
		best := -1
		for c, chain := range chains {
			if heads[c] == len(chain) {
				continue
			}
			if best < 0 || lessRankID(&tmp[chain[heads[c]]], &tmp[chains[best][heads[best]]]) {
				best = c
			}
		}
		group[out] = tmp[chains[best][heads[best]]]
		heads[best]++
	}
}

// sharesObject reports whether two events of group are about the same followed object.
func sharesObject(group []Event) bool {
	for i := range group {
		k := keyOf(&group[i])
		if k.kind == objectNone {
			continue
		}
		for j := i + 1; j < len(group); j++ {
			if keyOf(&group[j]) == k {
				return true
			}
		}
	}
	return false
}

func lessRankID(a, b *Event) bool {
	if ra, rb := rank(a.Type), rank(b.Type); ra != rb {
		return ra < rb
	}
	return a.ID < b.ID
}

// chainOrder orders the events (indexes into group, in ID order) of one object within a second:
// its *.created events, then its other events in the order their states link up (linkStates),
// then its *.deleted events.
func chainOrder(done, group []Event, members []int, k objectKey) []int {
	var created, others, deleted []int
	for _, i := range members {
		switch rank(group[i].Type) {
		case rankCreated:
			created = append(created, i)
		case rankDeleted:
			deleted = append(deleted, i)
		default:
			others = append(others, i)
		}
	}
	out := make([]int, 0, len(members))
	out = append(out, created...)
	if len(others) > 1 {
		others = linkStates(lastState(done, group, created, k), group, others)
	}
	out = append(out, others...)
	return append(out, deleted...)
}

// lastState is the object's state just before its non-created events of this second: its
// *.created event of this second, else its last event of an earlier second, else, for the
// entitlement summary (which has no created event), the empty summary every customer starts with;
// nil when unknown.
func lastState(done, group []Event, created []int, k objectKey) *Event {
	if len(created) > 0 {
		return &group[created[len(created)-1]]
	}
	for p := len(done) - 1; p >= 0; p-- {
		if keyOf(&done[p]) == k {
			return &done[p]
		}
	}
	if k.kind == objectSummary {
		return &Event{EntitlementSummary: &EntitlementSummary{}}
	}
	return nil
}

// linkStates orders the updates of one object within a second (indexes into group, in ID order)
// so that each finds the object in the state the one before it left it (canFollow), starting
// from start's state. Events are transitions between states, so this is a trail through all of
// them; a depth-first search finds one, trying at each step the events that change nothing
// tracked (echoes such as customer.subscription.paused) first and then by ID. The first event is
// one that can follow start, or when none can (start is nil, or an event is missing) one whose
// prior state no other event produces, or when none is, any. When no complete trail exists (an
// event in the middle is missing) or the search exceeds its budget, the events are taken greedily
// by the same preferences, falling back to the smallest ID when nothing fits.
func linkStates(start *Event, group []Event, others []int) []int {
	m := len(others)
	ev := func(i int) *Event { return &group[others[i]] }
	follows := make([]bool, m*m) // follows[i*m+j]: j can come right after i
	indegree := make([]int, m)   // how many of the events j can come right after
	neutral := make([]bool, m)
	first := make([]bool, m)
	for j := range m {
		neutral[j] = canFollow(ev(j), ev(j))
		first[j] = start != nil && canFollow(start, ev(j))
		for i := range m {
			if i != j && canFollow(ev(i), ev(j)) {
				follows[i*m+j] = true
				indegree[j]++
			}
		}
	}
	if !slices.Contains(first, true) {
		for j := range m {
			first[j] = indegree[j] == 0
		}
	}
	if !slices.Contains(first, true) {
		for j := range m {
			first[j] = true
		}
	}
	fits := func(last, j int) bool {
		if last < 0 {
			return first[j]
		}
		return follows[last*m+j]
	}

	taken := make([]bool, m)
	path := make([]int, 0, m)
	budget := 4096
	var search func(last int) bool
	search = func(last int) bool {
		if len(path) == m {
			return true
		}
		if budget--; budget < 0 {
			return false
		}
		for _, echo := range [2]bool{true, false} {
			for j := range m {
				if taken[j] || neutral[j] != echo || !fits(last, j) {
					continue
				}
				taken[j] = true
				path = append(path, j)
				if search(j) {
					return true
				}
				taken[j] = false
				path = path[:len(path)-1]
			}
		}
		return false
	}
	if !search(-1) {
		clear(taken)
		path = path[:0]
		remaining := slices.Clone(indegree) // how many remaining events j can come right after
		last := -1
		for range m {
			pick := -1
			for j := range m {
				if !taken[j] && fits(last, j) && (pick < 0 || (neutral[j] && !neutral[pick])) {
					pick = j
				}
			}
			if pick < 0 {
				for j := range m {
					if !taken[j] && remaining[j] == 0 {
						pick = j
						break
					}
				}
			}
			if pick < 0 {
				pick = slices.Index(taken, false)
			}
			taken[pick] = true
			for j := range m {
				if follows[pick*m+j] {
					remaining[j]--
				}
			}
			path = append(path, pick)
			last = pick
		}
	}
	out := make([]int, m)
	for i, j := range path {
		out[i] = others[j]
	}
	return out
}

// canFollow reports whether b can come right after a: the state a leaves the object in equals the
// state b found it in, in every field the derivation tracks. canFollow(b, b) means b changed none
// of them.
func canFollow(a, b *Event) bool {
	if b.prior == nil {
		return false
	}
	switch {
	case b.prior.subscription != nil:
		return a.Subscription != nil && sameSubscription(a.Subscription, b.prior.subscription)
	case b.prior.customer != nil:
		return a.Customer != nil && maps.Equal(a.Customer.Metadata, b.prior.customer.Metadata)
	case b.prior.summary != nil:
		return a.EntitlementSummary != nil && slices.Equal(a.EntitlementSummary.LookupKeys, b.prior.summary.LookupKeys)
	}
	return false
}

func sameSubscription(a, b *SubscriptionObject) bool {
	return a.Status == b.Status &&
		a.CancelAtPeriodEnd == b.CancelAtPeriodEnd &&
		a.periodEnd == b.periodEnd &&
		a.periodStart == b.periodStart &&
		a.itemsPeriodEnd == b.itemsPeriodEnd &&
		a.TrialEnd == b.TrialEnd &&
		a.EndedAt == b.EndedAt &&
		a.cancelAt == b.cancelAt &&
		a.canceledAt == b.canceledAt &&
		a.latestInvoice == b.latestInvoice &&
		a.Paused == b.Paused &&
		a.PauseBehavior == b.PauseBehavior &&
		a.PauseResumesAt == b.PauseResumesAt &&
		slices.Equal(a.PriceIDs, b.PriceIDs) &&
		slices.Equal(a.ProductIDs, b.ProductIDs) &&
		slices.Equal(a.Items, b.Items)
}
