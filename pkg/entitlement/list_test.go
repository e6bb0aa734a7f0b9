package entitlement_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// ListCustomers pages through every row in id order, inside a READ ONLY transaction (which
// refuses LoadCustomers' FOR UPDATE).
func TestListCustomersPagesInIDOrderReadOnly(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	save(t, db, nil,
		customer("cus_c", "", "active", true, []string{"premium"}, 300),
		customer("cus_a", "u_1", "canceled", false, []string{}, 100),
		customer("cus_b", "", "trialing", true, []string{"premium"}, 200),
	)

	tx, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()

	var ids []string
	var pages int
	for after := ""; ; pages++ {
		page, err := entitlement.ListCustomers(ctx, tx, scope.Scope{}, after, 2)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			ids = append(ids, c.CustomerID)
		}
		after = page[len(page)-1].CustomerID
	}
	require.Equal(t, []string{"cus_a", "cus_b", "cus_c"}, ids)
	require.Equal(t, 2, pages)

	page, err := entitlement.ListCustomers(ctx, tx, scope.Scope{}, "cus_a", 1)
	require.NoError(t, err)
	require.Len(t, page, 1)
	want := customer("cus_b", "", "trialing", true, []string{"premium"}, 200)
	require.True(t, want.Same(page[0]), "the row as saved: %+v", page[0])

	_, err = entitlement.LoadCustomers(ctx, tx, []scope.Key{{ID: "cus_a"}})
	require.Error(t, err, "FOR UPDATE is refused in a read-only transaction: why ListCustomers exists")
}

func TestListCustomersRefusesANonPositiveLimit(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	_, err := entitlement.ListCustomers(context.Background(), db.Pool, scope.Scope{}, "", 0)
	require.ErrorContains(t, err, "limit 0 is not positive")
}
