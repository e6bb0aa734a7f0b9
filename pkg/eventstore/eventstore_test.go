package eventstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func event(t *testing.T, id, customer string, created int64) stripeevent.Event {
	t.Helper()
	ev, err := stripeevent.Parse(fmt.Appendf(nil,
		`{"id":%q,"object":"event","type":"customer.updated","created":%d,"livemode":false,"api_version":"2024-06-20","data":{"object":{"id":%q,"object":"customer"}}}`,
		id, created, customer))
	require.NoError(t, err)
	return ev
}

func TestAppendIsIdempotentAndKeepsRawBytes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()

	a, b := event(t, "evt_a", "cus_1", 20), event(t, "evt_b", "cus_1", 10)
	n, err := eventstore.Append(ctx, db.Pool, []stripeevent.Event{a, b, a})
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	n, err = eventstore.Append(ctx, db.Pool, []stripeevent.Event{b})
	require.NoError(t, err)
	require.Zero(t, n)

	var payload []byte
	var version string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT payload, api_version FROM stripe_events WHERE id = 'evt_a'`).Scan(&payload, &version))
	require.Equal(t, a.Raw, payload)
	require.Equal(t, "2024-06-20", version)

	count, _, err := eventstore.Count(ctx, db.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 2, count)
}

func TestHistoriesInCreatedOrder(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := eventstore.Append(ctx, db.Pool, []stripeevent.Event{
		event(t, "evt_3", "cus_1", 30), event(t, "evt_1", "cus_1", 10), event(t, "evt_2", "cus_2", 20),
	})
	require.NoError(t, err)

	h, err := eventstore.Histories(ctx, db.Pool, []string{"cus_1", "cus_2", "cus_none"})
	require.NoError(t, err)
	require.Len(t, h["cus_1"], 2)
	require.Equal(t, "evt_1", h["cus_1"][0].ID)
	require.Equal(t, "evt_3", h["cus_1"][1].ID)
	require.Len(t, h["cus_2"], 1)
	require.Empty(t, h["cus_none"])

	ids, err := eventstore.Customers(ctx, db.Pool, "", 1)
	require.NoError(t, err)
	require.Equal(t, []string{"cus_1"}, ids)
	ids, err = eventstore.Customers(ctx, db.Pool, "cus_1", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"cus_2"}, ids)
}
