package eventstore_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// BenchmarkAppend is the event store's share of one processor batch: 1,000 real captured
// subscription events (4.5–6.4 KB each, over Postgres's 2 KB TOAST threshold, so each payload is
// compressed) appended in one transaction, committed. payload=pglz is the column's compression
// before migration 000016 (Postgres's default), payload=lz4 after it; both in one run, each on a
// fresh database. events/s counts appended events.
func BenchmarkAppend(b *testing.B) {
	var templates [][]byte
	for _, name := range []string{"customer.subscription.created.json", "customer.subscription.updated.json", "invoice.paid.json"} {
		raw, err := os.ReadFile(filepath.Join("..", "testdata", "stripe-events", name))
		require.NoError(b, err)
		templates = append(templates, raw)
	}
	for _, compression := range []string{"pglz", "lz4"} {
		b.Run("payload="+compression, func(b *testing.B) {
			db := pgtest.New(b)
			ctx := context.Background()
			_, err := db.Pool.Exec(ctx, `ALTER TABLE stripe_events ALTER COLUMN payload SET COMPRESSION `+compression)
			require.NoError(b, err)
			const n = 1000
			seq := 0
			batch := func() []stripeevent.Event {
				evs := make([]stripeevent.Event, n)
				for i := range evs {
					seq++
					t := templates[seq%len(templates)]
					ev, err := stripeevent.Parse(bytes.Replace(t, []byte(`"id": "evt_`), fmt.Appendf(nil, `"id": "evt_%09d`, seq), 1))
					require.NoError(b, err)
					evs[i] = ev
				}
				return evs
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				evs := batch()
				b.StartTimer()
				tx, err := db.Pool.Begin(ctx)
				require.NoError(b, err)
				added, err := eventstore.Append(ctx, tx, evs)
				require.NoError(b, err)
				require.EqualValues(b, n, added)
				require.NoError(b, tx.Commit(ctx))
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
