package eventstore

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// A new deployment starts with an empty event store, which autovacuum analyzes while it is tiny.
// A statement prepared and run a few times then must not keep a plan made for an empty table
// once the table has grown: the soak saw the history queries stay sequential scans and take
// seconds at 60,000 events. The session prices sequential scans out as the processor's pool does
// (processor/run.go openPool, held to it by processor/plan_test.go).
func TestHistoryQueriesUseIndexesAsTheStoreGrows(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	conn := pgtest.Conn(t, db, map[string]string{"enable_seqscan": "off"})

	fill := func(from, to int) {
		t.Helper()
		_, err := conn.Exec(ctx, `INSERT INTO stripe_events (id, type, created, livemode, customer_id, payload)
			SELECT 'evt_'||g, 'customer.updated', g, false, 'cus_'||(g/4), '{}'::bytea FROM generate_series($1::int, $2::int) g`, from, to)
		require.NoError(t, err)
	}
	// The first events, as autovacuum sees them early on.
	fill(1, 40)
	_, err := conn.Exec(ctx, `ANALYZE stripe_events`)
	require.NoError(t, err)

	queries := map[string]struct{ prepare, args string }{
		"payloads":  {`PREPARE payloads(text[]) AS ` + payloadsSQL, `('{evt_%[1]s,cus_%[1]s}')`},
		"envelopes": {`PREPARE envelopes(boolean[], text[], text[]) AS ` + envelopesSQL, `('{false,true}', '{"",""}', '{evt_%[1]s,cus_%[1]s}')`},
		"tails":     {`PREPARE tails(boolean[], text[], text[], bigint[]) AS ` + envelopesAfterSQL, `('{false,true}', '{"",""}', '{evt_%[1]s,cus_%[1]s}', '{100,-9223372036854775808}')`},
	}
	for name, q := range queries {
		_, err := conn.Exec(ctx, q.prepare)
		require.NoError(t, err)
		for range 8 { // past the 5 custom plans after which Postgres may settle on a generic one
			_, err := conn.Exec(ctx, `EXECUTE `+name+fmt.Sprintf(q.args, "x"))
			require.NoError(t, err)
		}
	}
	fill(41, 50000)

	for name, q := range queries {
		plan := pgtest.Explain(t, conn, `EXECUTE `+name+fmt.Sprintf(q.args, "1"))
		require.NotContains(t, plan, "Seq Scan", "%s:\n%s", name, plan)
		if name == "tails" {
			// The bound is in the index condition, not a filter over the whole history.
			require.Contains(t, plan, "stripe_events_customer_history", plan)
			require.Regexp(t, `Index Cond: .*created > `, plan)
		}
	}
}
