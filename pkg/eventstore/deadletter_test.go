package eventstore_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func TestRecordDeadLetterStoresAnything(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	weird := "evt_\x00\xff" + strings.Repeat("x", 5000)
	d := eventstore.DeadLetter{EventID: weird, Subject: "stripe.events._none.x", StreamSeq: 7, Payload: []byte{0, 0xff, '{'},
		Reason: "bad \x00 bytes \xfe", Attempts: 1}
	require.NoError(t, eventstore.RecordDeadLetter(t.Context(), db.Pool, d))
	d.Attempts = 2
	require.NoError(t, eventstore.RecordDeadLetter(t.Context(), db.Pool, d), "the same stream sequence again updates the row")
	got, err := eventstore.ListDeadLetters(t.Context(), db.Pool, "")
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, d.Payload, got[0].Payload, "raw bytes kept as they are")
	require.Equal(t, 2, got[0].Attempts)
	require.True(t, strings.HasPrefix(got[0].EventID, "evt_"))
	require.LessOrEqual(t, len(got[0].EventID), 255+6)
}

// A dead letter that fails again keeps its row with the new reason and one more attempt; one
// that applies is deleted. Both are what dlq redrive does.
func TestDeadLetterStillFailingAndDeleted(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	for seq, id := range []string{"evt_a", "evt_b"} {
		require.NoError(t, eventstore.RecordDeadLetter(ctx, db.Pool, eventstore.DeadLetter{EventID: id, Subject: "s",
			StreamSeq: uint64(seq + 1), Payload: []byte("{}"), Reason: "first", Attempts: 3}))
	}
	n, err := eventstore.CountDeadLetters(ctx, db.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)

	a, err := eventstore.ListDeadLetters(ctx, db.Pool, "evt_a")
	require.NoError(t, err)
	require.Len(t, a, 1)
	require.NoError(t, eventstore.StillFailing(ctx, db.Pool, a[0].ID, "again \x00"))
	b, err := eventstore.ListDeadLetters(ctx, db.Pool, "evt_b")
	require.NoError(t, err)
	require.Len(t, b, 1)
	require.NoError(t, eventstore.DeleteDeadLetter(ctx, db.Pool, b[0].ID))

	left, err := eventstore.ListDeadLetters(ctx, db.Pool, "")
	require.NoError(t, err)
	require.Len(t, left, 1)
	require.Equal(t, "evt_a", left[0].EventID)
	require.Equal(t, "again \uFFFD", left[0].Reason)
	require.Equal(t, 4, left[0].Attempts)
	require.False(t, left[0].FailedAt.Before(a[0].FailedAt))
}
