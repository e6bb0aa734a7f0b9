package subscription_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/subscription"
)

// after is the events of stored with Created > t, the tail a checkpoint at t resumes with.
func after(stored []subscription.Event, t int64) []subscription.Event {
	var out []subscription.Event
	for _, e := range stored {
		if e.Created > t {
			out = append(out, e)
		}
	}
	return out
}

// folded is how many distinct events of stored have Created <= t: a checkpoint at t's Events.
func folded(stored []subscription.Event, t int64) int64 {
	seen := map[string]bool{}
	for _, e := range stored {
		if e.Created <= t {
			seen[e.ID] = true
		}
	}
	return int64(len(seen))
}

func rungsOf(cps []subscription.Checkpoint) []subscription.Rung {
	out := make([]subscription.Rung, len(cps))
	for i := range cps {
		out[i] = subscription.RungOf(&cps[i])
	}
	return out
}

// TestLadderEqualsDerive is the ladder's equivalence property. Events arrive one at a time as
// Stripe might deliver them (any order, duplicates, late arrivals); each arrival resumes, as the
// processor does, from the newest checkpoint of the ladder before it (or from scratch), the
// ladder keeps the checkpoints it had up to that one plus the new ones Ladder.Resume returns,
// thinned, all through JSON. After every arrival the resumed state equals Derive, the ladder is
// within its bound, and resuming from EVERY rung of it, with the stored events after the rung
// plus any of the events still to come that are after it, equals Derive of those events. Small
// base steps space the rungs a few events apart so that these short histories have many.
func TestLadderEqualsDerive(t *testing.T) {
	t.Parallel()
	histories := 120
	if testing.Short() {
		histories = 30
	}
	rules := subscription.DefaultRules()
	ladders := []subscription.Ladder{{BaseStep: 1}, {BaseStep: 1, Max: 5}, {BaseStep: 2, Max: 8}}
	var fromRung, fromHead, scratch, checked int
	for seed := range uint64(histories) {
		l := ladders[seed%uint64(len(ladders))]
		limit := l.Max
		if limit == 0 {
			limit = subscription.LadderMax
		}
		events := decodeAll(t, generate(t, seed, cus).raws)
		r := rand.New(rand.NewPCG(seed, 5))
		delivered := deliver(r, events)
		if seed%3 == 0 {
			subscription.Order(delivered) // mostly in order, with a few late arrivals
			for range 1 + r.IntN(3) {
				i, j := r.IntN(len(delivered)), r.IntN(len(delivered))
				delivered[i], delivered[j] = delivered[j], delivered[i]
			}
		}
		var stored []subscription.Event
		var ladder []subscription.Checkpoint // in Created order
		for n, e := range delivered {
			at := fmt.Sprintf("seed %d, arrival %d", seed, n)
			stored = append(stored, e)
			want := subscription.Derive(cus, stored, rules)
			from := -1
			for i := range ladder {
				if ladder[i].Created < e.Created {
					from = i
				}
			}
			var got subscription.State
			var cps []subscription.Checkpoint
			var err error
			switch {
			case from < 0:
				got, cps, err = l.Resume(cus, nil, stored, rules)
				scratch++
			default:
				got, cps, err = l.Resume(cus, &ladder[from], after(stored, ladder[from].Created), rules)
				if from == len(ladder)-1 {
					fromHead++
				} else {
					fromRung++
				}
			}
			require.NoError(t, err, at)
			require.Equal(t, want, got, at)
			merged := append(slices.Clone(ladder[:from+1]), cps...)
			require.True(t, slices.IsSortedFunc(merged, func(a, b subscription.Checkpoint) int { return int(a.Created - b.Created) }), at)
			keep := l.Thin(rungsOf(merged))
			ladder = ladder[:0]
			for i, cp := range merged {
				if keep[i] {
					b, err := json.Marshal(cp)
					require.NoError(t, err)
					var back subscription.Checkpoint
					require.NoError(t, json.Unmarshal(b, &back))
					ladder = append(ladder, back)
				}
			}
			require.LessOrEqual(t, len(ladder), limit, at)
			require.Equal(t, merged[len(merged)-1].Created, ladder[len(ladder)-1].Created, "%s: the newest is kept", at)

			// Any tail of later events: the stored ones after the rung, and some to come.
			var future []subscription.Event
			for _, f := range delivered[n+1:] {
				if r.IntN(2) == 0 {
					future = append(future, f)
				}
			}
			for i := range ladder {
				cp := &ladder[i]
				require.Equal(t, folded(stored, cp.Created), cp.Events, "%s, rung %d", at, i)
				st, _, err := subscription.Resume(cus, cp, after(stored, cp.Created), rules)
				require.NoError(t, err, "%s, rung %d", at, i)
				require.Equal(t, want, st, "%s, rung %d", at, i)
				later := append(after(stored, cp.Created), after(future, cp.Created)...)
				st, _, err = subscription.Resume(cus, cp, later, rules)
				require.NoError(t, err, "%s, rung %d", at, i)
				require.Equal(t, subscription.Derive(cus, append(slices.Clone(stored), after(future, cp.Created)...), rules), st, "%s, rung %d with later events", at, i)
				checked++
			}
		}
	}
	require.Positive(t, fromRung)
	require.Positive(t, scratch)
	t.Logf("%d arrivals resumed from the newest checkpoint, %d from an older rung, %d from scratch; %d rungs checked", fromHead, fromRung, scratch, checked)
}

// invoices is a synthetic history of n invoice.paid events, one a second from t0.
func invoices(n int, t0 int64) []subscription.Event {
	out := make([]subscription.Event, n)
	for i := range out {
		out[i] = subscription.Event{ID: fmt.Sprintf("evt_%08d", i), Type: "invoice.paid", Created: t0 + int64(i), CustomerID: cus}
	}
	return out
}

// newestBefore is the index of the newest rung with Events <= n (a late event inserted after
// the n-th event can resume from it), -1 when there is none.
func newestBefore(rungs []subscription.Rung, n int64) int {
	best := -1
	for i, r := range rungs {
		if r.Events <= n && (best < 0 || r.Events > rungs[best].Events) {
			best = i
		}
	}
	return best
}

// TestLadderCost holds the default ladder to its documented bounds while a history grows one
// event at a time, each followed by a new newest checkpoint as the consumer writes them: at most
// LadderMax checkpoints, and a late event d events before the newest re-derives at most 4d + 2 ×
// LadderBaseStep events (the events after the newest rung before it, or the whole history).
func TestLadderCost(t *testing.T) {
	t.Parallel()
	const n = 150_000
	var l subscription.Ladder
	var rungs []subscription.Rung
	most := 0
	for head := int64(1); head <= n; head++ {
		rungs = append(rungs, subscription.Rung{Created: head, Events: head})
		keep := l.Thin(rungs)
		kept := rungs[:0]
		for i, r := range rungs {
			if keep[i] {
				kept = append(kept, r)
			}
		}
		rungs = kept
		most = max(most, len(rungs))
		require.LessOrEqual(t, len(rungs), subscription.LadderMax, "head %d", head)
		if head%997 != 0 && head != n {
			continue
		}
		for d := int64(1); d <= head; d = d*3/2 + 1 {
			cost := head
			if i := newestBefore(rungs, head-d); i >= 0 {
				cost = head - rungs[i].Events
			}
			require.LessOrEqual(t, cost, 4*d+2*subscription.LadderBaseStep, "head %d, late event %d back", head, d)
		}
	}
	t.Logf("at most %d checkpoints over %d events; %d at the end", most, n, len(rungs))
}

// TestLadderAfterScratch: one derivation of a long history from scratch (an imported customer's
// first event, a replay) returns the rungs of a whole ladder, and a late event a few events back
// resumes from one of them, near the head, to the same state as Derive.
func TestLadderAfterScratch(t *testing.T) {
	t.Parallel()
	rules := subscription.DefaultRules()
	var l subscription.Ladder
	for _, n := range []int{10, 1000, 20_000} {
		history := invoices(n, t0)
		_, cps, err := l.Resume(cus, nil, history, rules)
		require.NoError(t, err)
		rungs := rungsOf(cps)
		keep := l.Thin(rungs)
		require.NotContains(t, keep, false, "n=%d: Resume returns only rungs the ladder keeps", n)
		require.LessOrEqual(t, len(cps), subscription.LadderMax, "n=%d", n)
		head := cps[len(cps)-1].Events
		require.Equal(t, int64(n-1), head, "the newest is at the last event's second minus one")
		for d := int64(1); d < head; d = d*2 + 1 {
			cost := int64(n)
			i := newestBefore(rungs, head-d)
			if i >= 0 {
				cost = head - rungs[i].Events
			}
			require.LessOrEqual(t, cost, 4*d+2*subscription.LadderBaseStep, "n=%d, %d back", n, d)
		}
		// A late event 5 events before the newest checkpoint.
		late := subscription.Event{ID: "evt_late", Type: "customer.subscription.updated", CustomerID: cus, Created: cps[len(cps)-1].Created - 5,
			Subscription: &subscription.SubscriptionObject{ID: "sub_late", CustomerID: cus, Status: "active", PriceIDs: []string{"price_pro"}}}
		all := append(slices.Clone(history), late)
		i := len(cps) - 1
		for i >= 0 && cps[i].Created >= late.Created {
			i--
		}
		var st subscription.State
		if i < 0 {
			st, _, err = l.Resume(cus, nil, all, rules)
		} else {
			require.LessOrEqual(t, head-cps[i].Events, int64(4*6+2*subscription.LadderBaseStep), "n=%d", n)
			st, _, err = l.Resume(cus, &cps[i], after(all, cps[i].Created), rules)
		}
		require.NoError(t, err)
		require.Equal(t, subscription.Derive(cus, all, rules), st, "n=%d", n)
		t.Logf("n=%d: %d checkpoints; a late event 5 back resumes %d events back", n, len(cps), head-cps[max(i, 0)].Events)
	}
}
