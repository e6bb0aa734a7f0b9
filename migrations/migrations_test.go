package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/migrations"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func tables(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(),
		"SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'schema_migrations' ORDER BY 1")
	require.NoError(t, err)
	var names []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	require.NoError(t, rows.Err())
	return names
}

func TestUpDownUp(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	want := []string{"admin_audit", "applied_marks", "backfill_state", "console_sessions", "customer_checkpoints", "customer_entitlements", "database_timeline", "dead_letters", "flag_catalogue", "grant_log", "grants", "notification_outbox", "notification_state", "pending_repairs", "stripe_events", "switches", "user_entitlements"}

	v, dirty, err := migrations.Current(db.URL)
	require.NoError(t, err)
	require.Zero(t, v)
	require.False(t, dirty)

	require.NoError(t, migrations.Up(db.URL))
	require.Equal(t, want, tables(t, db))
	v, dirty, err = migrations.Current(db.URL)
	require.NoError(t, err)
	require.Equal(t, uint(migrations.Version), v)
	require.False(t, dirty)

	require.NoError(t, migrations.Up(db.URL), "up again is a no-op")

	require.NoError(t, migrations.Down(db.URL))
	require.Empty(t, tables(t, db))

	require.NoError(t, migrations.Up(db.URL))
	require.Equal(t, want, tables(t, db))
}

func TestEventStorePrimaryKeyDedupes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	const ins = `INSERT INTO stripe_events (id, type, created, livemode, customer_id, payload)
	             VALUES ('evt_1', 'customer.created', 1, false, 'cus_1', '\x7b7d') ON CONFLICT (id) DO NOTHING`
	tag, err := db.Pool.Exec(ctx, ins)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
	tag, err = db.Pool.Exec(ctx, ins)
	require.NoError(t, err)
	require.EqualValues(t, 0, tag.RowsAffected())
}

func TestBadURL(t *testing.T) {
	t.Parallel()
	require.ErrorContains(t, migrations.Up("mysql://x"), "want postgres://")
}

// The event store's payloads are compressed with lz4 (this server is built with it): appends
// and history loads of real 3-6 KB events are faster than with pglz.
func TestEventPayloadsAreCompressedWithLZ4(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	var method string
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT attcompression::text FROM pg_attribute
		WHERE attrelid = 'stripe_events'::regclass AND attname = 'payload'`).Scan(&method))
	require.Equal(t, "l", method)
}
