package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// 000010 keeps several checkpoints a customer (the ladder); down keeps each customer's newest.
func TestCheckpointLadderMigration(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	exec := func(sql string) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, sql)
		require.NoError(t, err)
	}
	migrateTo(t, db, 9)
	exec(`INSERT INTO customer_checkpoints (livemode, customer_id, checkpoint_created, version, state) VALUES (false, 'cus_1', 5, 1, '{}')`)
	migrateTo(t, db, 10)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM customer_checkpoints`).Scan(&n))
	require.Zero(t, n, "version 1 rows are dropped")
	exec(`INSERT INTO customer_checkpoints (livemode, customer_id, checkpoint_created, events, version, state) VALUES
		(false, 'cus_1', 5, 10, 2, '{}'), (false, 'cus_1', 9, 20, 2, '{}'), (true, 'cus_1', 3, 1, 2, '{}'), (false, 'cus_2', 1, 1, 2, '{}')`)
	migrateTo(t, db, 9)
	rows, err := db.Pool.Query(ctx, `SELECT customer_id || ' ' || livemode || ' ' || checkpoint_created FROM customer_checkpoints ORDER BY 1`)
	require.NoError(t, err)
	var got []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		got = append(got, s)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"cus_1 false 9", "cus_1 true 3", "cus_2 false 1"}, got)
}

// 000017 keeps each checkpoint's JSON as bytes; down makes it jsonb again, the same value.
func TestCheckpointStateBytesMigration(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	migrateTo(t, db, 16)
	const state = `{"version": 3, "created": 9, "fold": {"subs": [{"object": {"id": "sub_1"}}], "last_id": "evt_é"}}`
	_, err := db.Pool.Exec(ctx, `INSERT INTO customer_checkpoints (livemode, customer_id, checkpoint_created, events, version, state)
		VALUES (false, 'cus_1', 9, 20, 3, $1::jsonb)`, state)
	require.NoError(t, err)
	migrateTo(t, db, 17)
	var raw []byte
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT state FROM customer_checkpoints`).Scan(&raw))
	require.JSONEq(t, state, string(raw))
	migrateTo(t, db, 16)
	var back string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT state::text FROM customer_checkpoints`).Scan(&back))
	require.JSONEq(t, state, back)
}

// 000018 leaves room on the read model's pages for HOT updates; down resets it.
func TestReadModelFillfactorMigration(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	options := func() []string {
		t.Helper()
		var got []string
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT coalesce(array_agg(relname || ' ' || array_to_string(reloptions, ',') ORDER BY relname), '{}')
			FROM pg_class WHERE relname IN ('customer_entitlements', 'user_entitlements', 'notification_state') AND reloptions IS NOT NULL`).Scan(&got))
		return got
	}
	migrateTo(t, db, 18)
	require.Equal(t, []string{"customer_entitlements fillfactor=70", "notification_state fillfactor=70", "user_entitlements fillfactor=70"}, options())
	migrateTo(t, db, 17)
	require.Empty(t, options())
}
