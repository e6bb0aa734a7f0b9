package wait_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/wait"
)

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	wait.For(t, 5*time.Second, "third call", func() bool { return calls.Add(1) >= 3 })
	require.EqualValues(t, 3, calls.Load())
}

// recorder is a testing.TB that records Fatalf instead of stopping the goroutine for good.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = format
	panic(r)
}

func TestForFailsAfterTheDeadline(t *testing.T) {
	t.Parallel()
	r := &recorder{TB: t}
	start := time.Now()
	func() {
		defer func() {
			if p := recover(); p != r {
				panic(p)
			}
		}()
		wait.For(r, 50*time.Millisecond, "never", func() bool { return false })
	}()
	require.Equal(t, "%s: not within %s", r.failed)
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
}
