package e2e_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/migrations"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// The compose file gives each service a role of least privilege: its init script and its grants
// are run here, as the postgres image and postgres-grants run them (the database renamed, the
// roles made unique), against a real Postgres, and each service's DATABASE_URL is checked for
// what its role may and may not do.
func TestComposeLeastPrivilege(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	suffix := "_" + db.Name
	rename := strings.NewReplacer("tollgate_processor", "tollgate_processor"+suffix, "tollgate_queryapi", "tollgate_queryapi"+suffix,
		"tollgate_operator", "tollgate_operator"+suffix, "DATABASE tollgate ", "DATABASE "+db.Name+" ", `\connect tollgate`, `\connect `+db.Name)
	roles := []string{"tollgate_processor" + suffix, "tollgate_queryapi" + suffix, "tollgate_operator" + suffix}
	admin, err := pgx.Connect(ctx, pgtest.ServerURL())
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db.Name+" WITH (FORCE)")
		for _, r := range roles {
			_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+r)
		}
		_ = admin.Close(ctx)
	})

	// The init script, as psql runs it: \connect switches to the database.
	conn := admin
	for _, line := range strings.Split(rename.Replace(p.Configs["postgres_roles"].Content), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, `\connect `):
			conn, err = pgx.Connect(ctx, pgtest.URLFor(t, strings.TrimPrefix(line, `\connect `)))
			require.NoError(t, err)
			defer conn.Close(ctx)
		default:
			_, err := conn.Exec(ctx, line)
			require.NoError(t, err, line)
		}
	}

	env := func(svc string) string { return *p.Services[svc].Environment["DATABASE_URL"] }
	as := func(composeURL string) string {
		u, err := url.Parse(composeURL)
		require.NoError(t, err)
		local, err := url.Parse(db.URL)
		require.NoError(t, err)
		u.User = url.User(u.User.Username() + suffix) // the test server trusts loopback
		u.Host, u.Path = local.Host, local.Path
		return u.String()
	}
	require.NotContains(t, p.Services["listener"].Environment, "DATABASE_URL", "the listener has no database")
	processorURL, queryapiURL := as(env("processor")), as(env("queryapi"))
	require.Contains(t, env("processor"), "tollgate_processor:")
	require.Contains(t, env("queryapi"), "tollgate_queryapi:")

	// The processor owns the schema: it migrates as itself.
	require.NoError(t, migrations.Up(processorURL))
	owner, err := pgx.Connect(ctx, processorURL)
	require.NoError(t, err)
	defer owner.Close(ctx)
	for _, stmt := range strings.Split(rename.Replace(p.Configs["postgres_grants"].Content), ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			_, err := owner.Exec(ctx, stmt)
			require.NoError(t, err, "postgres-grants runs as the processor: %s", stmt)
		}
	}

	q, err := pgx.Connect(ctx, queryapiURL)
	require.NoError(t, err)
	defer q.Close(ctx)
	for _, table := range []string{"customer_entitlements", "user_entitlements", "switches", "schema_migrations"} {
		_, err := q.Exec(ctx, "SELECT 1 FROM "+table+" LIMIT 1")
		require.NoError(t, err, "the query API reads %s", table)
	}
	_, err = q.Exec(ctx, "LISTEN tollgate_entitlements")
	require.NoError(t, err)
	for _, stmt := range []string{
		"SELECT 1 FROM stripe_events LIMIT 1",
		"SELECT 1 FROM dead_letters LIMIT 1",
		"UPDATE switches SET enabled = true",
		"DELETE FROM customer_entitlements",
		"TRUNCATE user_entitlements",
		"CREATE TABLE sneaky (id int)",
	} {
		_, err := q.Exec(ctx, stmt)
		require.ErrorContains(t, err, "permission denied", stmt)
	}
}
