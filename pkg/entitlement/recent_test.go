package entitlement_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// The most recently changed rows come first, as GetUser and GetCustomer read them.
func TestRecentReadsTheLatestChangesFirst(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	// Three writes, three transactions: updated_at is now() of each.
	save(t, db, []string{"u_a"}, customer("cus_a", "u_a", "active", true, []string{"premium"}, 100))
	save(t, db, []string{"u_b"}, customer("cus_b", "u_b", "canceled", false, []string{}, 200))
	save(t, db, []string{"u_a"}, customer("cus_a", "u_a", "past_due", true, []string{"premium"}, 300))

	users, err := entitlement.RecentUsers(ctx, db.Pool, 10)
	require.NoError(t, err)
	require.Len(t, users, 2)
	require.Equal(t, "u_a", users[0].UserID, "changed last")
	require.Equal(t, "u_b", users[1].UserID)
	want, err := entitlement.GetUser(ctx, db.Pool, scope.Key{ID: "u_a"})
	require.NoError(t, err)
	require.Equal(t, want, users[0])

	cs, err := entitlement.RecentCustomers(ctx, db.Pool, 1)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	wantC, err := entitlement.GetCustomer(ctx, db.Pool, scope.Key{ID: "cus_a"})
	require.NoError(t, err)
	require.Equal(t, wantC, cs[0])

	_, err = entitlement.RecentUsers(ctx, db.Pool, 0)
	require.ErrorContains(t, err, "limit 0 is not positive")
	_, err = entitlement.RecentCustomers(ctx, db.Pool, -1)
	require.ErrorContains(t, err, "limit -1 is not positive")
}
