package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// TestLeastPrivilegeGrant runs the grant of README.md as written (with unique role
// names and this test's database) and checks that the service and the fail-open command work
// with exactly those privileges.
func TestLeastPrivilegeGrant(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	service, operator := db.Name+"_svc", db.Name+"_op"

	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(readme), "## Least privilege")
	require.True(t, ok)
	_, block, ok := strings.Cut(after, "```sql\n")
	require.True(t, ok)
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	block = strings.NewReplacer("tollgate_queryapi", service, "tollgate_operator", operator,
		"ON DATABASE tollgate ", "ON DATABASE "+db.Name+" ").Replace(block)

	t.Cleanup(func() {
		for _, role := range []string{service, operator} {
			_, _ = db.Pool.Exec(ctx, "DROP OWNED BY "+role)
			_, _ = db.Pool.Exec(ctx, "DROP ROLE IF EXISTS "+role)
		}
	})
	var statements int
	for _, stmt := range strings.Split(block, ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			_, err := db.Pool.Exec(ctx, stmt)
			require.NoError(t, err, stmt)
			statements++
		}
	}
	require.Equal(t, 8, statements)

	save(t, db, premiumCustomer())
	b := startInstance(t, db, urlAs(t, db, service))
	require.Equal(t, true, b.getJSON(t, "/readyz", http.StatusOK)["ready"])
	b.waitListening(t)
	require.Equal(t, true, b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)["premium"])
	require.Equal(t, true, b.getJSON(t, "/v1/customers/cus_123/entitlement", http.StatusOK)["premium"])
	require.Equal(t, http.StatusNotFound, b.get(t, "/v1/users/u_nobody/entitlement", testToken).Code)

	out := failOpenCLI(t, urlAs(t, db, operator), "on")
	require.Contains(t, out, "fail-open is ON")
	followsWithin2s(t, b, true)
	require.Contains(t, failOpenCLI(t, urlAs(t, db, operator), "off"), "fail-open is off")
	followsWithin2s(t, b, false)

	// The service's role could not write even without its read-only sessions.
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "SET ROLE "+service)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "UPDATE switches SET enabled = true")
	require.ErrorContains(t, err, "permission denied")
	_, err = conn.Exec(ctx, "RESET ROLE")
	require.NoError(t, err)
}

// urlAs is the test database's URL with role as the user.
func urlAs(t *testing.T, db *pgtest.DB, role string) string {
	t.Helper()
	u, err := url.Parse(db.URL)
	require.NoError(t, err)
	u.User = url.User(role)
	return u.String()
}
