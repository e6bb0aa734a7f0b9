package eventstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// Missing answers from the event store at any age: ids it holds are left out, the others come
// back in the order asked, each once.
func TestMissingIsWhatTheStoreDoesNotHold(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	_, err := eventstore.Append(ctx, db.Pool, []stripeevent.Event{
		event(t, "evt_old", "cus_1", 1), // created in 1970: long past any dedupe window
		event(t, "evt_b", "cus_2", 1_700_000_000),
	})
	require.NoError(t, err)

	got, err := eventstore.Missing(ctx, db.Pool, []string{"evt_z", "evt_old", "evt_a", "evt_b", "evt_z"})
	require.NoError(t, err)
	require.Equal(t, []string{"evt_z", "evt_a"}, got)

	got, err = eventstore.Missing(ctx, db.Pool, []string{"evt_old", "evt_b"})
	require.NoError(t, err)
	require.Empty(t, got)

	got, err = eventstore.Missing(ctx, db.Pool, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}
