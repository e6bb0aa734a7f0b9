package operate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The history keeps the last window of samples, oldest first.
func TestHistoryKeepsTheLastHour(t *testing.T) {
	t.Parallel()
	var h History
	t0 := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	for i := range 130 {
		h.Add(Sample{At: t0.Add(time.Duration(i) * time.Minute), Pending: float64(i)})
	}
	s := h.Samples()
	require.Len(t, s, 61)
	require.InDelta(t, 69.0, s[0].Pending, 0)
	require.InDelta(t, 129.0, s[60].Pending, 0)
}
