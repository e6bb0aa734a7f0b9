package ingest

import (
	"fmt"
	"hash/maphash"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/processor/internal/projection"
)

// A batch is applied in shares at once: every event of a customer (in its scope) in one share,
// so no two shares wait for each other's customer locks; no share is empty.
func TestSharesKeepEachCustomerTogether(t *testing.T) {
	var ds []*delivery
	for i := range 600 {
		e := stripeevent.Event{ID: fmt.Sprintf("evt_%d", i), CustomerID: fmt.Sprintf("cus_%d", i%50), Livemode: i%100 < 50}
		if i%7 == 0 {
			e.CustomerID = "" // stored only
		}
		ds = append(ds, &delivery{event: projection.Admitted{Event: e}})
	}
	for _, n := range []int{0, 1, 2, 3, 8} {
		parts := shares(ds, n, maphash.MakeSeed())
		require.LessOrEqual(t, len(parts), max(n, 1))
		if n >= 2 {
			require.Len(t, parts, n, "600 events of 100 customers fill every share")
		}
		seen := map[string]int{} // customer in scope -> share
		total := 0
		for i, p := range parts {
			require.NotEmpty(t, p)
			total += len(p)
			for _, d := range p {
				e := d.event.Event
				if e.CustomerID == "" {
					continue
				}
				k := projection.ScopeOf(e).Of(e.CustomerID).String()
				if j, ok := seen[k]; ok {
					require.Equal(t, j, i, "customer %s in two shares", k)
				}
				seen[k] = i
			}
		}
		require.Equal(t, len(ds), total)
		require.Len(t, seen, 100)
	}
	require.Len(t, shares(ds[:1], 4, maphash.MakeSeed()), 1)
}
