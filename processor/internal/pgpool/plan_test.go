package pgpool_test

import (
	"testing"

	"github.com/tollgate/tollgate/processor/internal/pgpool"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// The event store's and the read model's statements are planned for index use on sessions that
// price sequential scans out (their plan tests, pkg/eventstore/plan_test.go and
// pkg/entitlement/plan_test.go, run on such sessions): every session of the processor's pool is one.
func TestPoolPricesSequentialScansOut(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	pool, err := pgpool.Open(ctx, db.URL)
	require.NoError(t, err)
	defer pool.Close()
	var setting string
	require.NoError(t, pool.QueryRow(ctx, `SHOW enable_seqscan`).Scan(&setting))
	require.Equal(t, "off", setting)
}
