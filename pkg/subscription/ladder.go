package subscription

import (
	"cmp"
	"slices"
)

// The ladder ("an event older than the checkpoint re-derives from the last checkpoint
// before it"): a customer keeps its newest checkpoint, the head, and older ones, rungs, spaced
// geometrically back through its history, so that a late event d events before the head
// re-derives only the events after the newest rung before it: O(d) events plus a constant, not
// the whole history.
//
// Spacing. Each checkpoint records n, the events it folded (Checkpoint.Events); N is the head's.
// A rung at distance d = N - n belongs to the bucket (step(d), floor(n / step(d))), where step(d)
// is the largest base × 4^k that is at most max(d, base) (base: Ladder.BaseStep, LadderBaseStep by default), and of each bucket
// only the oldest rung is kept. Because the steps are powers of 4 (times the base) and a rung
// keeps its n, a rung that is the oldest of its bucket stays the oldest of the bigger bucket it
// falls into as the head moves away (four buckets of one step make one of the next): rungs stay
// put as they age and thin out geometrically. The distances [4^k, 4^(k+1)) × base hold three
// buckets of step 4^k × base (four or five where rungs do not sit at bucket starts), and the
// distances below 4 × base four, so a history of N events keeps about 3 log4(N / 64) + 5
// checkpoints: 20 at 100,000 events. LadderMax caps them; past it the oldest rungs are dropped (a
// late event that far back derives from scratch).
//
// Cost. Rungs at distance about d are about step(d) <= d apart, and the nearest rung of the next
// step is within two of its steps, so the newest rung before a late event d events back is at
// most about 3d + 2 × base events back (TestLadderCost holds it to 4d + 2 × base).

// LadderBaseStep is the spacing of the rungs nearest the head, in events. Deriving this many
// events (decoded, from the processor's cache) costs far less than the apply's fixed cost, so
// rungs closer together than that would only take rows.
const LadderBaseStep = 64

// LadderMax is the most checkpoints a customer keeps, the head included: the ladder of a
// history of up to about a million events fits under it.
const LadderMax = 24

// Ladder is the spacing of a customer's checkpoints. The zero Ladder is the one the processor
// uses (LadderBaseStep, LadderMax); other values are for tests, which space rungs a few events
// apart to exercise short histories.
type Ladder struct {
	BaseStep int64 // the spacing nearest the head, in events; 0: LadderBaseStep
	Max      int   // the most checkpoints kept, the head included (at least 2); 0: LadderMax
}

func (l Ladder) base() int64 {
	if l.BaseStep <= 0 {
		return LadderBaseStep
	}
	return l.BaseStep
}

func (l Ladder) limit() int {
	if l.Max < 2 {
		return LadderMax
	}
	return l.Max
}

// Rung is where a checkpoint sits in a customer's history: its T (Checkpoint.Created) and the
// number of events it folded (Checkpoint.Events).
type Rung struct {
	Created int64
	Events  int64
}

// RungOf is the checkpoint's place in the ladder.
func RungOf(cp *Checkpoint) Rung { return Rung{Created: cp.Created, Events: cp.Events} }

// step is the bucket width at distance d from the head.
func (l Ladder) step(d int64) int64 {
	step := l.base()
	for step*4 <= d {
		step *= 4
	}
	return step
}

// ladderBucket is the bucket of a rung of n events under a head of head events.
type ladderBucket struct{ step, index int64 }

func (l Ladder) bucketOf(n, head int64) ladderBucket {
	step := l.step(max(head-n, 0))
	return ladderBucket{step, n / step}
}

// Thin returns which of rungs the ladder keeps: the newest (by Created, the head) and, among the
// others, the oldest of each bucket, at most l.Max in all (the newest ones). keep[i] is for
// rungs[i]; rungs need not be sorted, and should have distinct Created. A checkpoint with more
// events is expected to have a later Created (both grow along the history); Thin is pure.
func (l Ladder) Thin(rungs []Rung) (keep []bool) {
	keep = make([]bool, len(rungs))
	if len(rungs) == 0 {
		return keep
	}
	order := make([]int, len(rungs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(rungs[a].Created, rungs[b].Created), cmp.Compare(a, b))
	})
	head := rungs[order[len(order)-1]].Events
	kept := 0
	var last ladderBucket
	for j, i := range order[:len(order)-1] {
		// In Created order the buckets come in runs (the step only shrinks, the index only
		// grows), so the first of a run is its bucket's oldest.
		b := l.bucketOf(rungs[i].Events, head)
		if j == 0 || b != last {
			keep[i] = true
			kept++
		}
		last = b
	}
	keep[order[len(order)-1]] = true
	for _, i := range order {
		if kept < l.limit() {
			break
		}
		if keep[i] {
			keep[i] = false
			kept--
		}
	}
	return keep
}
