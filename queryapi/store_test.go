package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// The contract's multi-host DATABASE_URL carries target_session_attrs=read-write, so that a
// promoted standby is found after a failover. pgx checks it by asking whether the session is
// read-only, which the query API's sessions always are: every host was refused, and the query
// API never became ready on such a URL.
func TestReadOnlyPoolAcceptsReadWriteTargetSessionAttrs(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	for _, attrs := range []string{"read-write", "primary", "any"} {
		pool, err := openReadOnlyPool(ctx, db.URL+"&target_session_attrs="+attrs)
		require.NoError(t, err)
		require.NoError(t, pool.Ping(ctx), "target_session_attrs=%s", attrs)
		var ro string
		require.NoError(t, pool.QueryRow(ctx, "SHOW transaction_read_only").Scan(&ro))
		require.Equal(t, "on", ro, "the session stays read-only")
		pool.Close()
	}
}
