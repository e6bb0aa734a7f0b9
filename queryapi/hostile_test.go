package main

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// Times Go's JSON encoding cannot write (year 10000, from a created or a period end of a hostile
// event) once made every answer for the customer a 500, for ever. Rows written by the processor
// are clamped now (FromState), and rows written before are clamped on the way out.
func TestAnswersCustomersWithUnrepresentableTimes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	state := subscription.State{CustomerID: "cus_y", UserID: "u_y", LastEventID: "evt_y", LastEventCreated: 1<<63 - 1}
	c := entitlement.FromState(scope.Scope{}, state, subscription.DefaultRules())
	require.Equal(t, 9999, c.LastEventCreated.Year(), "clamped when derived")
	save(t, b.db, c)
	// A row of an earlier release: year 10000 in Postgres.
	for _, q := range []string{
		`UPDATE customer_entitlements SET last_event_created = '10000-01-01T00:00:00Z' WHERE customer_id = 'cus_y'`,
		`UPDATE user_entitlements SET last_event_created = '10000-01-01T00:00:00Z' WHERE user_id = 'u_y'`,
	} {
		_, err := b.db.Pool.Exec(context.Background(), q)
		require.NoError(t, err)
	}
	for _, path := range []string{"/v1/customers/cus_y/entitlement?livemode=false", "/v1/users/u_y/entitlement?livemode=false"} {
		m := b.getJSON(t, path, http.StatusOK)
		require.Equal(t, "9999-12-31T23:59:59Z", m["last_event_created"], path)
	}
}
