package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/pkg/scope"
)

// The answer carries the limits the subscriptions give with the active grants on top, and a user
// known only by a grant is answered 200 with no customer and status none.
func TestAnswerLimitsAndGrants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c := premiumCustomer()
	c.Limits = map[string]int64{"projects": 10, "seats": 3}
	save(t, b.db, c)

	until := time.Date(2099, 1, 31, 0, 0, 0, 0, time.UTC)
	give := func(user string, features []string, limits map[string]int64, until *time.Time) grant.Grant {
		t.Helper()
		tx, err := b.db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		g, err := grant.Create(ctx, tx, grant.New{Scope: scope.Scope{}, UserID: user, Features: features, Limits: limits,
			Until: until, Reason: "support comp", By: "ops"})
		require.NoError(t, err)
		_, err = grant.RefreshUsers(ctx, tx, []scope.Key{g.User()})
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
		return g
	}
	g := give("u_42", []string{"export"}, map[string]int64{"projects": 5}, &until)
	comp := give("u_comp", []string{"premium"}, map[string]int64{}, nil)

	m := b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)
	require.Equal(t, []any{"export", "premium"}, m["features"])
	require.Equal(t, map[string]any{"projects": float64(15), "seats": float64(3)}, m["limits"])
	require.Equal(t, []any{map[string]any{"id": g.ID, "features": []any{"export"}, "limits": map[string]any{"projects": float64(5)},
		"until": "2099-01-31T00:00:00Z", "reason": "support comp", "by": "ops", "created_at": g.CreatedAt.Format(time.RFC3339Nano)}}, m["grants"])

	m = b.getJSON(t, "/v1/users/u_comp/entitlement", http.StatusOK)
	require.Equal(t, []any{}, m["customer_ids"])
	require.Equal(t, "none", m["status"])
	require.Equal(t, true, m["premium"])
	require.Equal(t, []any{"premium"}, m["features"])
	require.Equal(t, map[string]any{}, m["limits"])
	require.Nil(t, m["last_event_id"])
	require.Len(t, m["grants"], 1)
	require.Equal(t, comp.ID, m["grants"].([]any)[0].(map[string]any)["id"])
	require.Nil(t, m["grants"].([]any)[0].(map[string]any)["until"], "null: until revoked")

	m = b.getJSON(t, "/v1/customers/cus_123/entitlement", http.StatusOK)
	require.Equal(t, map[string]any{"projects": float64(10), "seats": float64(3)}, m["limits"], "the customer's own limits")
	require.Equal(t, []any{}, m["grants"], "grants are given to users")

	b.getJSON(t, "/v1/users/u_comp/entitlement?livemode=true", http.StatusNotFound)
}
