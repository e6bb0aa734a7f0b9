package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Any database session may pg_notify the invalidation channel. A "*" from a role that cannot
// TRUNCATE the read model (here: one that may only connect) flushes nothing; a real TRUNCATE
// still does (TestCacheFollowsNotifications).
func TestNotifyFlushOnlyFromTheReadModelsWriters(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.cache.MaxAge = time.Hour })
	ctx := context.Background()
	b.saveSettled(t, premiumCustomer())
	require.Equal(t, true, b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)["premium"])

	role := b.db.Name + "_nobody"
	_, err := b.db.Pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = b.db.Pool.Exec(ctx, "DROP ROLE IF EXISTS "+role) })
	conn, err := pgx.Connect(ctx, urlAs(t, b.db, role))
	require.NoError(t, err)
	defer func() { _ = conn.Close(ctx) }()

	flushes := counter(t, b.reg, "tollgate_queryapi_cache_flushes_total")
	for _, payload := range []string{"*", "garbage", "*"} {
		_, err = conn.Exec(ctx, "SELECT pg_notify('tollgate_entitlements', $1)", payload)
		require.NoError(t, err)
	}
	// A key notification sent after them arrives after them: once it is seen, they were too.
	invalidations := counter(t, b.reg, "tollgate_queryapi_cache_invalidations_total")
	_, err = conn.Exec(ctx, "SELECT pg_notify('tollgate_entitlements', 'c:test  cus_unrelated')")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return counter(t, b.reg, "tollgate_queryapi_cache_invalidations_total") > invalidations
	}, 2*time.Second, 5*time.Millisecond)
	require.InDelta(t, flushes, counter(t, b.reg, "tollgate_queryapi_cache_flushes_total"), 0, "no flush from an arbitrary session")

	hits := counter(t, b.reg, "tollgate_queryapi_cache_hits_total")
	require.Equal(t, true, b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)["premium"])
	require.InDelta(t, hits+1, counter(t, b.reg, "tollgate_queryapi_cache_hits_total"), 0, "still served from the cache")
}
