package load_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/load"
)

func TestQuantile(t *testing.T) {
	t.Parallel()
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"no samples", nil, 0.5, 0},
		{"one sample", ms(7), 0.99, 7 * time.Millisecond},
		{"median of odd count", ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{"median of even count is the lower middle", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 0.50, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p100 is the max", ms(hundred...), 1, 100 * time.Millisecond},
		{"q above 1 is clamped", ms(1, 2), 2, 2 * time.Millisecond},
		{"q of 0 is the min", ms(3, 4), 0, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, load.Quantile(tt.sorted, tt.q))
		})
	}
}

func TestRunCountsRequestsAndErrors(t *testing.T) {
	t.Parallel()
	errOdd := errors.New("odd")
	r, err := load.Run(context.Background(), load.Config{Workers: 4, Requests: 1000}, func(_ context.Context, _, i int) error {
		if i%2 == 1 {
			return errOdd
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 1000, r.Requests)
	require.Equal(t, 500, r.Errors)
	require.ErrorIs(t, r.FirstErr, errOdd)
	require.Len(t, r.Latencies, 1000)
	require.IsNonDecreasing(t, r.Latencies)
	require.Positive(t, r.Rate())
}

func TestRunNeedsABound(t *testing.T) {
	t.Parallel()
	_, err := load.Run(context.Background(), load.Config{Workers: 1}, func(context.Context, int, int) error { return nil })
	require.Error(t, err)
}
