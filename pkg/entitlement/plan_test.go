package entitlement

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// The read model of a new deployment is tiny when the first answers are read. A statement run a
// few times then must not keep that moment's plan (a sequential scan) once the table has grown.
// The session prices sequential scans out as the query API's pool does (queryapi/store.go
// readOnly, held to it by queryapi/plan_test.go).
func TestLookupsUseIndexesAsTheReadModelGrows(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	fill := func(from, to int) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, `INSERT INTO user_entitlements (user_id, customer_ids, premium, status, features,
			subscriptions, last_event_id, last_event_created, livemode, account)
			SELECT 'u_'||g, ARRAY['cus_'||g], true, 'active', '{premium}', '[]', 'evt_'||g, now(), g % 2 = 0, ''
			FROM generate_series($1::int, $2::int) g`, from, to)
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, `INSERT INTO customer_entitlements (customer_id, user_id, premium, status, features,
			subscriptions, last_event_id, last_event_created, livemode, account)
			SELECT 'cus_'||g, 'u_'||g, true, 'active', '{premium}', '[]', 'evt_'||g, now(), g % 2 = 0, ''
			FROM generate_series($1::int, $2::int) g`, from, to)
		require.NoError(t, err)
	}
	fill(1, 40)
	_, err := db.Pool.Exec(ctx, `ANALYZE user_entitlements, customer_entitlements`)
	require.NoError(t, err)

	conn := pgtest.Conn(t, db, map[string]string{"enable_seqscan": "off", "default_transaction_read_only": "on"})
	queries := map[string]struct{ prepare, execute string }{
		"by_user":     {`PREPARE by_user(boolean, text, text) AS ` + getUserSQL, `EXECUTE by_user(false, '', 'u_7')`},
		"by_customer": {`PREPARE by_customer(boolean, text, text) AS ` + getCustomerSQL, `EXECUTE by_customer(false, '', 'cus_7')`},
	}
	for name, q := range queries {
		_, err = conn.Exec(ctx, q.prepare)
		require.NoError(t, err)
		for range 8 { // past the 5 custom plans after which Postgres may settle on a generic one
			_, err := conn.Exec(ctx, `EXECUTE `+name+`(false, '', 'x_1')`)
			require.NoError(t, err)
		}
	}
	fill(41, 50000)

	for name, q := range queries {
		plan := pgtest.Explain(t, conn, q.execute)
		require.NotContains(t, plan, "Seq Scan", "%s:\n%s", name, plan)
	}
}
