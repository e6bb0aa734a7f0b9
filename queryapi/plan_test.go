package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// The read model of a new deployment is tiny when the first answers are read. A statement run a
// few times then must not keep that moment's plan (a sequential scan) once the table has grown.
func TestLookupsUseIndexesAsTheReadModelGrows(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	fill := func(from, to int) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, `INSERT INTO user_entitlements (user_id, customer_ids, premium, status, features,
			subscriptions, last_event_id, last_event_created)
			SELECT 'u_'||g, ARRAY['cus_'||g], true, 'active', '{premium}', '[]', 'evt_'||g, now()
			FROM generate_series($1::int, $2::int) g`, from, to)
		require.NoError(t, err)
	}
	fill(1, 40)
	_, err := db.Pool.Exec(ctx, `ANALYZE user_entitlements`)
	require.NoError(t, err)

	pool, err := openReadOnlyPool(ctx, db.URL)
	require.NoError(t, err)
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `PREPARE by_user(text) AS SELECT * FROM user_entitlements WHERE user_id = $1`)
	require.NoError(t, err)
	for range 8 { // past the 5 custom plans after which Postgres may settle on a generic one
		_, err := conn.Exec(ctx, `EXECUTE by_user('u_1')`)
		require.NoError(t, err)
	}
	fill(41, 50000)

	plan := pgtest.Explain(t, conn, `EXECUTE by_user('u_7')`)
	require.NotContains(t, plan, "Seq Scan", plan)
}
