package entitlement_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func customer(id, user, status string, premium bool, features []string, created int64) entitlement.Customer {
	end := time.Unix(created+30*24*3600, 0).UTC()
	return entitlement.Customer{
		CustomerID: id, UserID: user, Premium: premium, Status: status, Features: features,
		Subscriptions: []entitlement.Subscription{{
			ID: "sub_" + id, CustomerID: id, Status: status, PriceIDs: []string{"price_1"},
			ProductIDs: []string{"prod_1"}, CurrentPeriodEnd: &end,
		}},
		LastEventID: "evt_" + id, LastEventCreated: time.Unix(created, 0).UTC(),
	}
}

func save(t *testing.T, db *pgtest.DB, userIDs []string, cs ...entitlement.Customer) {
	users := make([]scope.Key, len(userIDs))
	for i, u := range userIDs {
		users[i] = scope.Key{ID: u}
	}
	t.Helper()
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, entitlement.SaveCustomers(ctx, tx, cs))
	require.NoError(t, entitlement.RefreshUsers(ctx, tx, users))
	require.NoError(t, tx.Commit(ctx))
}

func TestUserIsTheUnionOfItsCustomers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	save(t, db, []string{"u_1"},
		customer("cus_b", "u_1", "canceled", false, []string{}, 200),
		customer("cus_a", "u_1", "active", true, []string{"pro"}, 100),
		customer("cus_c", "u_2", "active", true, []string{"team"}, 300),
	)

	v, err := entitlement.GetUser(ctx, db.Pool, scope.Key{ID: "u_1"})
	require.NoError(t, err)
	require.Equal(t, "u_1", v.UserID)
	require.Equal(t, []string{"cus_a", "cus_b"}, v.CustomerIDs)
	require.True(t, v.Premium)
	require.Equal(t, "active", v.Status)
	require.Equal(t, []string{"pro"}, v.Features)
	require.Len(t, v.Subscriptions, 2)
	require.Equal(t, "sub_cus_a", v.Subscriptions[0].ID)
	require.Equal(t, "evt_cus_b", v.LastEventID, "the latest event of all the user's customers")
	require.Equal(t, time.Unix(200, 0).UTC(), v.LastEventCreated)

	_, err = entitlement.GetUser(ctx, db.Pool, scope.Key{ID: "u_2"})
	require.ErrorIs(t, err, entitlement.ErrNotFound, "u_2 was not refreshed")
}

// GetUsers reads many users in one round trip, each exactly as GetUser does; a user without a
// row is absent.
func TestGetUsers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	save(t, db, []string{"u_1", "u_2"},
		customer("cus_a", "u_1", "active", true, []string{"pro"}, 100),
		customer("cus_b", "u_2", "canceled", false, []string{}, 200),
	)
	keys := []scope.Key{{ID: "u_2"}, {ID: "u_none"}, {ID: "u_1"}, {ID: "u_1", Scope: scope.Scope{Livemode: true}}}
	got, err := entitlement.GetUsers(ctx, db.Pool, keys)
	require.NoError(t, err)
	require.Len(t, got, 2)
	for _, k := range []scope.Key{{ID: "u_1"}, {ID: "u_2"}} {
		want, err := entitlement.GetUser(ctx, db.Pool, k)
		require.NoError(t, err)
		require.Equal(t, want, got[k])
	}
	empty, err := entitlement.GetUsers(ctx, db.Pool, nil)
	require.NoError(t, err)
	require.Empty(t, empty)
}

func TestUserMovesWhenTheCustomerChangesUser(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	save(t, db, []string{"u_old"}, customer("cus_1", "u_old", "active", true, []string{"premium"}, 100))
	save(t, db, []string{"u_old", "u_new"}, customer("cus_1", "u_new", "active", true, []string{"premium"}, 200))

	_, err := entitlement.GetUser(ctx, db.Pool, scope.Key{ID: "u_old"})
	require.ErrorIs(t, err, entitlement.ErrNotFound)
	v, err := entitlement.GetUser(ctx, db.Pool, scope.Key{ID: "u_new"})
	require.NoError(t, err)
	require.Equal(t, []string{"cus_1"}, v.CustomerIDs)
}

func TestGetCustomer(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	c := customer("cus_1", "", "past_due", true, []string{"premium"}, 100)
	save(t, db, nil, c)

	v, err := entitlement.GetCustomer(ctx, db.Pool, scope.Key{ID: "cus_1"})
	require.NoError(t, err)
	require.Empty(t, v.UserID, "no user known")
	require.Equal(t, "cus_1", v.CustomerID)
	require.True(t, v.Same(c), "the row as saved")
	require.Equal(t, "past_due", v.Status)
	require.False(t, v.UpdatedAt.IsZero())
	require.Equal(t, time.UTC, v.UpdatedAt.Location())

	rows, err := entitlement.LoadCustomers(ctx, db.Pool, []scope.Key{{ID: "cus_1"}, {ID: "cus_x"}})
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.True(t, rows[scope.Key{ID: "cus_1"}].Same(c), "a row read back gives the same answer")
	changed := c
	changed.Status = "unpaid"
	require.False(t, rows[scope.Key{ID: "cus_1"}].Same(changed))

	_, err = entitlement.GetCustomer(ctx, db.Pool, scope.Key{ID: "cus_x"})
	require.ErrorIs(t, err, entitlement.ErrNotFound)
}
