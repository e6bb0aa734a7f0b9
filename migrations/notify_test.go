package migrations_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// The read model's triggers (000003, scoped by 000005) notify every committed change with the key
// the query API's cache uses: u:<mode> <account> <user_id>, c:<mode> <account> <customer_id>, * on
// TRUNCATE, s:<name> for switches.
func TestReadModelNotifications(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.URL)
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close(context.Background())) }()
	for _, ch := range []string{"tollgate_entitlements", "tollgate_switches"} {
		_, err = conn.Exec(ctx, "LISTEN "+ch)
		require.NoError(t, err)
	}
	next := func() string {
		t.Helper()
		n, err := conn.WaitForNotification(ctx)
		require.NoError(t, err)
		return n.Payload
	}
	exec := func(sql string) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, sql)
		require.NoError(t, err)
	}

	exec(`INSERT INTO customer_entitlements (customer_id, user_id, premium, status, features, subscriptions, last_event_id, last_event_created, livemode, account)
		VALUES ('cus_1', 'u_1', true, 'active', '{}', '[]', 'evt_1', now(), true, '')`)
	require.Equal(t, "c:live  cus_1", next())
	exec(`INSERT INTO user_entitlements (user_id, customer_ids, premium, status, features, subscriptions, last_event_id, last_event_created, livemode, account)
		VALUES ('u_1', '{cus_1}', true, 'active', '{}', '[]', 'evt_1', now(), false, 'acct_9')`)
	require.Equal(t, "u:test acct_9 u_1", next())
	exec(`UPDATE user_entitlements SET user_id = 'u_2' WHERE user_id = 'u_1'`)
	require.Equal(t, "u:test acct_9 u_1", next(), "a key change notifies the old key...")
	require.Equal(t, "u:test acct_9 u_2", next(), "...and the new one")
	exec(`UPDATE user_entitlements SET livemode = true`)
	require.Equal(t, "u:test acct_9 u_2", next(), "a scope change too")
	require.Equal(t, "u:live acct_9 u_2", next())
	exec(`UPDATE customer_entitlements SET premium = false`)
	require.Equal(t, "c:live  cus_1", next())
	exec(`DELETE FROM customer_entitlements`)
	require.Equal(t, "c:live  cus_1", next())
	exec(`TRUNCATE user_entitlements`)
	require.Equal(t, "*", next())
	exec(`UPDATE switches SET enabled = true WHERE name = 'fail_open'`)
	require.Equal(t, "s:fail_open", next())

	// Nothing is sent for a transaction that rolls back.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE switches SET enabled = false`)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	exec(`UPDATE customer_entitlements SET premium = true`) // no rows: no notification
	exec(`SELECT pg_notify('tollgate_entitlements', 'end')`)
	require.Equal(t, "end", next())
}
