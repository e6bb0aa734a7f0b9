package migrations_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/migrations"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// migrateTo moves the database to schema version v.
func migrateTo(t *testing.T, db *pgtest.DB, v uint) {
	t.Helper()
	src, err := iofs.New(migrations.Files(), ".")
	require.NoError(t, err)
	sqlDB, err := sql.Open("pgx/v5", db.URL)
	require.NoError(t, err)
	drv, err := pgxmigrate.WithInstance(sqlDB, &pgxmigrate.Config{})
	require.NoError(t, err)
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	require.NoError(t, err)
	defer func() { _, _ = m.Close() }()
	require.NoError(t, m.Migrate(v))
}

// 000005 carries the read model over: each row takes the scope of the stored event it was last
// derived from, and down keeps one row per id (the live platform's).
func TestScopesMigrationCarriesRowsOver(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	migrateTo(t, db, 4)
	exec := func(sql string) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, sql)
		require.NoError(t, err)
	}
	exec(`INSERT INTO stripe_events (id, type, created, livemode, account, customer_id, payload) VALUES
		('evt_live', 'customer.created', 1, true, NULL, 'cus_live', '{}'),
		('evt_test', 'customer.created', 1, false, NULL, 'cus_test', '{}'),
		('evt_acct', 'customer.created', 1, true, 'acct_1', 'cus_acct', '{}')`)
	exec(`INSERT INTO customer_entitlements (customer_id, user_id, premium, status, features, subscriptions, last_event_id, last_event_created) VALUES
		('cus_live', 'u_1', true, 'active', '{}', '[]', 'evt_live', now()),
		('cus_test', 'u_2', true, 'active', '{}', '[]', 'evt_test', now()),
		('cus_acct', 'u_3', true, 'active', '{}', '[]', 'evt_acct', now()),
		('cus_lost', NULL, false, 'none', '{}', '[]', 'evt_lost', now())`)
	exec(`INSERT INTO user_entitlements (user_id, customer_ids, premium, status, features, subscriptions, last_event_id, last_event_created) VALUES
		('u_2', '{cus_test}', true, 'active', '{}', '[]', 'evt_test', now())`)

	migrateTo(t, db, 5)
	scopes := func(table, id string) map[string]string {
		t.Helper()
		rows, err := db.Pool.Query(ctx, `SELECT `+id+`, CASE WHEN livemode THEN 'live' ELSE 'test' END || ' ' || account FROM `+table)
		require.NoError(t, err)
		out := map[string]string{}
		for rows.Next() {
			var k, v string
			require.NoError(t, rows.Scan(&k, &v))
			out[k] = v
		}
		require.NoError(t, rows.Err())
		return out
	}
	require.Equal(t, map[string]string{"cus_live": "live ", "cus_test": "test ", "cus_acct": "live acct_1", "cus_lost": "live "},
		scopes("customer_entitlements", "customer_id"))
	require.Equal(t, map[string]string{"u_2": "test "}, scopes("user_entitlements", "user_id"))

	// The same id in two scopes is two rows now; down keeps the live platform's.
	exec(`INSERT INTO customer_entitlements (customer_id, premium, status, features, subscriptions, last_event_id, last_event_created, livemode, account)
		VALUES ('cus_live', false, 'none', '{}', '[]', 'evt_x', now(), false, '')`)
	migrateTo(t, db, 4)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM customer_entitlements WHERE customer_id = 'cus_live' AND premium`).Scan(&n))
	require.Equal(t, 1, n)
}

// 000012 gives the rows derived before it empty limits and grants, and its down drops the rows of
// users known only by a grant (they have no event) before the columns that hold them.
func TestGrantsMigrationCarriesRowsOver(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	migrateTo(t, db, 10)
	exec := func(sql string) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, sql)
		require.NoError(t, err)
	}
	exec(`INSERT INTO customer_entitlements (livemode, account, customer_id, user_id, premium, status, features, subscriptions, last_event_id, last_event_created)
		VALUES (true, '', 'cus_1', 'u_1', true, 'active', '{premium}', '[]', 'evt_1', now())`)
	exec(`INSERT INTO user_entitlements (livemode, account, user_id, customer_ids, premium, status, features, subscriptions, last_event_id, last_event_created)
		VALUES (true, '', 'u_1', '{cus_1}', true, 'active', '{premium}', '[]', 'evt_1', now())`)
	migrateTo(t, db, 12)
	var limits, grants string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT limits::text, grants::text FROM user_entitlements WHERE user_id = 'u_1'`).Scan(&limits, &grants))
	require.Equal(t, "{}", limits)
	require.Equal(t, "[]", grants)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT limits::text FROM customer_entitlements WHERE customer_id = 'cus_1'`).Scan(&limits))
	require.Equal(t, "{}", limits)

	exec(`INSERT INTO user_entitlements (livemode, account, user_id, customer_ids, premium, status, features, subscriptions, grants)
		VALUES (true, '', 'u_comp', '{}', true, 'none', '{premium}', '[]', '[{"id": "grt_1"}]')`)
	migrateTo(t, db, 10)
	var users int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM user_entitlements`).Scan(&users))
	require.Equal(t, 1, users, "the grant-only user is gone with the grants")
}
