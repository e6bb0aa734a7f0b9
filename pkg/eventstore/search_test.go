package eventstore_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// The email search finds the customers whose latest customer object has the email, a page at a
// time, through the index (not by decoding every customer event), and is bounded by a statement
// timeout.
func TestCustomersByEmail(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	insert := func(id, typ, customer, email string, created int) {
		t.Helper()
		payload := fmt.Sprintf(`{"id":%q,"type":%q,"data":{"object":{"id":%q,"email":%q}}}`, id, typ, customer, email)
		_, err := db.Pool.Exec(ctx, `INSERT INTO stripe_events (id, type, created, livemode, customer_id, payload) VALUES ($1, $2, $3, false, $4, $5)`,
			id, typ, created, customer, []byte(payload))
		require.NoError(t, err)
	}
	for i := range 5 {
		insert(fmt.Sprintf("evt_c%d", i), "customer.created", fmt.Sprintf("cus_%d", i), "Ada@Example.com", 10)
	}
	insert("evt_moved", "customer.updated", "cus_4", "other@example.com", 20) // no longer hers
	insert("evt_bad", "customer.updated", "cus_9", "\xff", 20)                // not UTF-8: no email, no failure
	_, err := db.Pool.Exec(ctx, `INSERT INTO stripe_events (id, type, created, livemode, customer_id, payload) VALUES ('evt_raw', 'customer.updated', 30, false, 'cus_8', '\xff'::bytea)`)
	require.NoError(t, err)

	first, err := eventstore.CustomersByEmailPage(ctx, db.Pool, " ada@example.COM", 3, 0)
	require.NoError(t, err)
	second, err := eventstore.CustomersByEmailPage(ctx, db.Pool, "ada@example.com", 3, 3)
	require.NoError(t, err)
	require.Equal(t, []scope.Key{{ID: "cus_0"}, {ID: "cus_1"}, {ID: "cus_2"}}, first)
	require.Equal(t, []scope.Key{{ID: "cus_3"}}, second)
	moved, err := eventstore.CustomersByEmail(ctx, db.Pool, "other@example.com", 50)
	require.NoError(t, err)
	require.Equal(t, []scope.Key{{ID: "cus_4"}}, moved)

	conn := pgtest.Conn(t, db, map[string]string{"enable_seqscan": "off"})
	plan := pgtest.Explain(t, conn, `SELECT customer_id FROM stripe_events WHERE tollgate_event_email(payload) = 'ada@example.com'
		AND customer_id IS NOT NULL AND type IN ('customer.created', 'customer.updated', 'customer.deleted', 'tollgate.snapshot.customer')`)
	require.Contains(t, plan, "stripe_events_customer_email", plan)
}
