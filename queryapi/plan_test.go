package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// The read model's lookups are planned for index use on sessions that price sequential scans out
// (pkg/entitlement/plan_test.go runs them on such sessions): every session of the query API's pool
// is one, and read-only.
func TestPoolPricesSequentialScansOut(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	pool, err := openReadOnlyPool(ctx, db.URL)
	require.NoError(t, err)
	defer pool.Close()
	var seqscan, readOnly string
	require.NoError(t, pool.QueryRow(ctx, `SELECT current_setting('enable_seqscan'), current_setting('default_transaction_read_only')`).
		Scan(&seqscan, &readOnly))
	require.Equal(t, "off", seqscan)
	require.Equal(t, "on", readOnly)
}
