package failover_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/failover"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func payload(i int) []byte {
	return fmt.Appendf(nil, `{"id":"evt_%d","object":"event","type":"customer.created","created":%d,"livemode":false,`+
		`"data":{"object":{"id":"cus_%d","object":"customer","metadata":{}}}}`, i, 1_700_000_000+i, i)
}

// The first check records the timeline; a later one on another timeline (a promotion) regains
// before it records the new one, and records nothing when regaining failed.
func TestCheckRegainsOnANewTimeline(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	tli, err := failover.Timeline(ctx, db.Pool)
	require.NoError(t, err)
	require.Positive(t, tli)

	regains := 0
	regain := func(_ context.Context, c failover.Change) error {
		regains++
		require.True(t, c.Changed())
		return nil
	}
	c, err := failover.Check(ctx, db.Pool, regain)
	require.NoError(t, err)
	require.Equal(t, failover.Change{From: 0, To: tli}, c, "first check: recorded, nothing to regain")
	c, err = failover.Check(ctx, db.Pool, regain)
	require.NoError(t, err)
	require.False(t, c.Changed())
	require.Zero(t, regains)

	// As if the database had been on another timeline when last seen.
	_, err = db.Pool.Exec(ctx, `UPDATE database_timeline SET timeline = $1`, tli+7)
	require.NoError(t, err)
	_, err = failover.Check(ctx, db.Pool, func(context.Context, failover.Change) error { return errors.New("stream down") })
	require.ErrorContains(t, err, "stream down")
	var recorded int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT timeline FROM database_timeline`).Scan(&recorded))
	require.Equal(t, tli+7, recorded, "not recorded while regaining failed: the next check tries again")

	c, err = failover.Check(ctx, db.Pool, regain)
	require.NoError(t, err)
	require.Equal(t, failover.Change{From: tli + 7, To: tli}, c)
	require.Equal(t, 1, regains)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT timeline FROM database_timeline`).Scan(&recorded))
	require.Equal(t, tli, recorded)
}

// Regain hands apply the retained events the event store lacks, in stream order, and only
// those stored since the time asked.
func TestRegainAppliesWhatTheStoreLacks(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	js := natstest.Start(t).JetStream(t)
	ctx := context.Background()
	_, err := stream.Ensure(ctx, js, stream.Options{})
	require.NoError(t, err)
	var stored []stripeevent.Event
	for i := 1; i <= 6; i++ {
		_, err := js.Publish(ctx, stream.Subject(fmt.Sprint("cus_", i), "customer.created"), payload(i), jetstream.WithMsgID(fmt.Sprint("evt_", i)))
		require.NoError(t, err)
		if i%3 == 0 {
			ev, err := stripeevent.Parse(payload(i))
			require.NoError(t, err)
			stored = append(stored, ev)
		}
	}
	_, err = eventstore.Append(ctx, db.Pool, stored)
	require.NoError(t, err)

	var got []string
	r, err := failover.Regain(ctx, js, db.Pool, time.Time{}, func(_ context.Context, raws [][]byte) error {
		for _, raw := range raws {
			ev, err := stripeevent.Parse(raw)
			require.NoError(t, err)
			got = append(got, ev.ID)
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, failover.Regained{Read: 6, Missing: 4}, r)
	require.Equal(t, []string{"evt_1", "evt_2", "evt_4", "evt_5"}, got)

	r, err = failover.Regain(ctx, js, db.Pool, time.Now().Add(time.Minute), func(context.Context, [][]byte) error {
		t.Fatal("nothing was stored in the future")
		return nil
	})
	require.NoError(t, err)
	require.Zero(t, r.Read)
}
