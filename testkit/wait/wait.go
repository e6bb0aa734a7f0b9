// Package wait is the one way tests wait for a condition: poll it with a deadline, never a bare
// sleep. Test code only.
package wait

import (
	"testing"
	"time"
)

// Every is how often For polls.
const Every = 10 * time.Millisecond

// For polls cond every 10 ms until it returns true. It fails the test (tb.Fatalf, so call it from
// the test's goroutine) naming what when within passes first, or when the test's context ends.
func For(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	t := time.NewTimer(Every)
	defer t.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, within)
		}
		t.Reset(Every)
		select {
		case <-tb.Context().Done():
			tb.Fatalf("%s: %v", what, tb.Context().Err())
		case <-t.C:
		}
	}
}
