package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/migrations"
)

func TestHealthz(t *testing.T) {
	t.Parallel()
	b := startInstance(t, nil, "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
	rec := b.get(t, "/healthz", "")
	require.Equal(t, http.StatusOK, rec.Code, "healthz needs no token and no database")
	require.JSONEq(t, `{"status":"ok"}`, rec.Body.String())
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.getJSON(t, "/readyz", http.StatusOK)
	require.Equal(t, true, m["ready"])
	require.EqualValues(t, migrations.Version, m["schema_version"])
	require.EqualValues(t, migrations.Version, m["want_schema_version"])
	require.Equal(t, false, m["fail_open"])
	require.NotContains(t, m, "reason")
	b.waitListening(t)
	require.Equal(t, "listening", b.getJSON(t, "/readyz", http.StatusOK)["cache"])
}

func TestReadyzNotReady(t *testing.T) {
	t.Parallel()
	const v = migrations.Version
	tests := []struct {
		name   string
		breaks string
		want   string
	}{
		{"older schema", `UPDATE schema_migrations SET version = version - 1`, fmt.Sprintf("schema: version %d, this build reads version %d", v-1, v)},
		{"newer schema", `UPDATE schema_migrations SET version = version + 1`, fmt.Sprintf("schema: version %d, this build reads version %d", v+1, v)},
		{"dirty schema", `UPDATE schema_migrations SET dirty = true`, fmt.Sprintf("schema: version %d is dirty", v)},
		{"no migration", `DELETE FROM schema_migrations`, "schema: no migration applied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			_, err := b.db.Pool.Exec(context.Background(), tt.breaks)
			require.NoError(t, err)
			m := b.getJSON(t, "/readyz", http.StatusServiceUnavailable)
			require.Equal(t, false, m["ready"])
			require.Contains(t, m["reason"], tt.want)
			require.Contains(t, m, "fail_open", "the detail names the fail-open state")
		})
	}
}

func TestReadyzDatabaseDown(t *testing.T) {
	t.Parallel()
	b := startInstance(t, nil, "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
	m := b.getJSON(t, "/readyz", http.StatusServiceUnavailable)
	require.Equal(t, false, m["ready"])
	require.Equal(t, "postgres: not ready (details in the log)", m["reason"], "no user, database or host in an unauthenticated answer")
	require.Nil(t, m["schema_version"])
	require.Equal(t, "off", m["cache"])
}

// The service's sessions refuse to write, whatever its role may do: the pool and the LISTEN
// session alike.
func TestServiceCannotWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const insert = `INSERT INTO switches (name, enabled) VALUES ('sneaky', true)`

	_, err := b.app.pool.Exec(ctx, insert)
	requireReadOnlyError(t, err)
	_, err = b.app.pool.Exec(ctx, `UPDATE switches SET enabled = true`)
	requireReadOnlyError(t, err)

	conn, err := pgx.ConnectConfig(ctx, listenConnConfig(b.app.pool))
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close(ctx)) }()
	_, err = conn.Exec(ctx, insert)
	requireReadOnlyError(t, err)

	// The test's own (read-write) pool can: the refusal is the session's, not the table's.
	_, err = b.db.Pool.Exec(ctx, insert)
	require.NoError(t, err)
}

func requireReadOnlyError(t *testing.T, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "25006", pgErr.Code, "read_only_sql_transaction: %s", pgErr.Message)
}
