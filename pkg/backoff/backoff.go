// Package backoff is Tollgate's one backoff helper: the waits of a retry loop, growing
// exponentially up to a cap, with jitter so that clients that failed together do not come back
// together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff: the wait after the n-th failure is Base doubled n-1 times,
// capped at Max, of which a random part of up to half is taken off. The zero Policy waits
// nothing. A Policy is a value and safe for concurrent use.
type Policy struct {
	// Base is the full wait after the first failure.
	Base time.Duration
	// Max caps the full wait; 0 or less than Base means Base.
	Max time.Duration
}

// Delay is the wait after the attempt-th failure (attempt counted from 1; less is treated as 1).
// It lies in [full/2, full] where full is min(Base·2^(attempt-1), Max).
func (p Policy) Delay(attempt int) time.Duration {
	if p.Base <= 0 {
		return 0
	}
	ceiling := max(p.Max, p.Base)
	full := p.Base << min(max(attempt, 1)-1, 30)
	if full <= 0 || full > ceiling { // <= 0: the shift overflowed
		full = ceiling
	}
	half := full / 2
	return half + rand.N(half+1)
}

// Sleep waits d, or less when ctx is done first; it returns ctx.Err() in that case, else nil.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
