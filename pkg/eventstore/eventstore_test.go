package eventstore_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

func event(t *testing.T, id, customer string, created int64) stripeevent.Event {
	t.Helper()
	ev, err := stripeevent.Parse(stripetest.Event{ID: id, Type: "customer.updated", Created: created, APIVersion: "2024-06-20",
		Object: map[string]any{"id": customer, "object": "customer"}}.JSON(t))
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

	var count int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM stripe_events`).Scan(&count))
	require.Equal(t, 2, count)
}

func TestHistoriesByCustomerAndByID(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := eventstore.Append(ctx, db.Pool, []stripeevent.Event{
		event(t, "evt_3", "cus_1", 30), event(t, "evt_1", "cus_1", 10), event(t, "evt_2", "cus_2", 20),
	})
	require.NoError(t, err)

	var got []eventstore.Envelope
	require.NoError(t, eventstore.ForEachEnvelope(ctx, db.Pool, []scope.Key{{ID: "cus_1"}, {ID: "cus_none"}, {Scope: scope.Live(), ID: "cus_1"}}, func(e eventstore.Envelope) error {
		got = append(got, e)
		return nil
	}))
	slices.SortFunc(got, func(a, b eventstore.Envelope) int { return strings.Compare(a.ID, b.ID) })
	require.Equal(t, []eventstore.Envelope{
		{Customer: scope.Key{ID: "cus_1"}, ID: "evt_1", Type: "customer.updated", Created: 10},
		{Customer: scope.Key{ID: "cus_1"}, ID: "evt_3", Type: "customer.updated", Created: 30},
	}, got)
	stop := errors.New("stop")
	err = eventstore.ForEachEnvelope(ctx, db.Pool, []scope.Key{{ID: "cus_1"}}, func(eventstore.Envelope) error { return stop })
	require.ErrorIs(t, err, stop, "the callback's error ends the walk")

	stored, err := eventstore.Payloads(ctx, db.Pool, []string{"evt_2", "evt_3", "evt_none"})
	require.NoError(t, err)
	slices.SortFunc(stored, func(a, b eventstore.Stored) int { return strings.Compare(a.ID, b.ID) })
	require.Len(t, stored, 2)
	require.Equal(t, "cus_2", stored[0].Customer.ID)
	require.Equal(t, event(t, "evt_2", "cus_2", 20).Raw, stored[0].Payload)
	require.Equal(t, "evt_3", stored[1].ID)
	require.Equal(t, "cus_1", stored[1].Customer.ID)

	ids, err := eventstore.Customers(ctx, db.Pool, scope.Key{}, 1)
	require.NoError(t, err)
	require.Equal(t, []scope.Key{{ID: "cus_1"}}, ids)
	ids, err = eventstore.Customers(ctx, db.Pool, scope.Key{ID: "cus_1"}, 10)
	require.NoError(t, err)
	require.Equal(t, []scope.Key{{ID: "cus_2"}}, ids)
	n, err := eventstore.CountCustomers(ctx, db.Pool)
	require.NoError(t, err)
	require.Equal(t, 2, n)
}
