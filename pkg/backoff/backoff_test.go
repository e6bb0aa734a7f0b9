package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/backoff"
)

func TestDelayGrowsWithJitterUpToTheCap(t *testing.T) {
	t.Parallel()
	p := backoff.Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for attempt, full := range map[int]time.Duration{
		0: 100 * time.Millisecond, 1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 60: time.Second, 1000: time.Second,
	} {
		seen := map[time.Duration]bool{}
		for range 50 {
			d := p.Delay(attempt)
			require.GreaterOrEqual(t, d, full/2, "attempt %d", attempt)
			require.LessOrEqual(t, d, full, "attempt %d", attempt)
			seen[d] = true
		}
		require.Greater(t, len(seen), 1, "jitter: attempt %d", attempt)
	}
	require.Zero(t, backoff.Policy{}.Delay(3), "the zero policy waits nothing")
	require.LessOrEqual(t, backoff.Policy{Base: time.Second}.Delay(10), time.Second, "no Max: capped at Base")
}

func TestSleepStopsWithTheContext(t *testing.T) {
	t.Parallel()
	require.NoError(t, backoff.Sleep(t.Context(), time.Millisecond))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	require.ErrorIs(t, backoff.Sleep(ctx, time.Hour), context.Canceled)
	require.Less(t, time.Since(start), time.Second)
}
