package main

import (
	"math/rand/v2"
	"testing"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// TestCheckpointsKeepTheAnswer applies a population's events one batch at a time, as the
// consumer does, in an order with late arrivals (so some customers resume from their checkpoint
// and some are derived from scratch), and checks that the read model is the derivation of the
// whole histories, that every customer has a checkpoint, and that `processor replay --all`,
// which derives from scratch and rewrites the checkpoints, changes nothing.
func TestCheckpointsKeepTheAnswer(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "c")
	events := k.Population(12)
	r := rand.New(rand.NewPCG(12, 1))
	delivered := append([][]byte(nil), events...)
	for range len(delivered) / 8 { // a few late arrivals in an otherwise time-ordered feed
		i, j := r.IntN(len(delivered)), r.IntN(len(delivered))
		delivered[i], delivered[j] = delivered[j], delivered[i]
	}
	m := projection.NewMetrics(prometheus.NewRegistry())
	p := &projection.Projector{DB: b.DB.Pool, Rules: b.Rules, Cache: projection.NewEventCache(1 << 20), Log: processortest.TestLogger(t), Metrics: m}
	for i := 0; i < len(delivered); i += 3 {
		batch := make([]projection.Admitted, 0, 3)
		for _, raw := range delivered[i:min(i+3, len(delivered))] {
			a, err := projection.Admit(raw)
			require.NoError(t, err)
			batch = append(batch, a)
		}
		_, err := p.Apply(t.Context(), projection.Input{Events: batch})
		require.NoError(t, err)
	}
	want := processortest.Expect(t, b.Rules, events...)
	processortest.RequireReadModel(t, b.DB.Pool, want)
	require.Positive(t, testutil.ToFloat64(m.CheckpointMisses), "some events arrived before their customer's checkpoint")

	var n int
	require.NoError(t, b.DB.Pool.QueryRow(t.Context(), `SELECT count(DISTINCT (livemode, account, customer_id)) FROM customer_checkpoints`).Scan(&n))
	require.Equal(t, len(want.Customers), n)

	// A checkpoint that lies is trusted by the consumer, never by replay.
	_, err := b.DB.Pool.Exec(t.Context(), `UPDATE customer_checkpoints
		SET state = convert_to(jsonb_set(convert_from(state, 'UTF8')::jsonb, '{fold,metadata_user}', '"u_bogus"')::text, 'UTF8')`)
	require.NoError(t, err)
	changed, _ := replayCmdOut(t, map[string]string{"DATABASE_URL": b.DB.URL}, "--all")
	require.Zero(t, changed)
	var bogus int
	require.NoError(t, b.DB.Pool.QueryRow(t.Context(), `SELECT count(*) FROM customer_checkpoints
		WHERE convert_from(state, 'UTF8')::jsonb->'fold'->>'metadata_user' = 'u_bogus'`).Scan(&bogus))
	require.Zero(t, bogus, "replay rewrites every checkpoint")
	processortest.RequireReadModel(t, b.DB.Pool, want)
}

// TestLateEventResumesFromARung: a long customer (3,000 stored events, then new events one at a
// time as the consumer applies them) keeps a ladder of checkpoints within subscription.LadderMax,
// and a late event a few events back, or a thousand back, re-derives from the newest rung before
// it: the events derived are about the distance (derived_events_total), not the history, the
// rung resume is counted, and the answer is the derivation from scratch (a replay of the customer
// changes nothing).
func TestLateEventResumesFromARung(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	k := processortest.NewKit(t, "l")
	const customer, stored = "cus_ladder", 3000
	key := scope.Key{ID: customer}
	at := storeHistory(t, db, k, customer, stored)
	m := projection.NewMetrics(prometheus.NewRegistry())
	p := &projection.Projector{DB: db.Pool, Rules: subscription.DefaultRules(), Cache: projection.NewEventCache(projection.DefaultEventCacheSize), Log: processortest.TestLogger(t), Metrics: m}
	apply := func(ev projection.Admitted) {
		t.Helper()
		_, err := p.Apply(t.Context(), projection.Input{Events: []projection.Admitted{ev}})
		require.NoError(t, err)
	}
	checkpoints := func() int {
		t.Helper()
		var n int
		require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM customer_checkpoints WHERE customer_id = $1`, customer).Scan(&n))
		require.LessOrEqual(t, n, subscription.LadderMax)
		return n
	}
	derived := func() int { return int(testutil.ToFloat64(m.DerivedEvents)) }
	sameAsScratch := func() {
		t.Helper()
		res, err := p.Apply(t.Context(), projection.Input{Customers: []scope.Key{key}, FromScratch: true})
		require.NoError(t, err)
		require.Equal(t, 1, res.Derived)
		require.Zero(t, res.Changed, "the derivation from scratch gives the same row")
	}

	at += 60
	apply(newEvent(t, k, customer, at)) // the first event: from scratch, with a whole ladder
	require.Equal(t, stored+1, derived())
	require.Greater(t, checkpoints(), 5, "the scratch derivation leaves rungs")
	var times []int64
	for range 200 {
		at += 60
		times = append(times, at)
		apply(newEvent(t, k, customer, at))
		checkpoints()
	}
	require.Zero(t, testutil.ToFloat64(m.CheckpointRungResumes))

	// 5 events back: between the 6th and 5th newest events.
	start := derived()
	apply(newEvent(t, k, customer, times[len(times)-6]+30))
	require.InDelta(t, 1, testutil.ToFloat64(m.CheckpointRungResumes), 0)
	require.Zero(t, testutil.ToFloat64(m.CheckpointMisses))
	late := derived() - start
	require.GreaterOrEqual(t, late, 6, "the late event and the 5 after it")
	require.LessOrEqual(t, late, 4*6+2*subscription.LadderBaseStep, "derived from a rung near the head, not the %d events", stored+200)
	sameAsScratch()

	// About 1,000 events back, into the bulk-stored history (two events a month there, the
	// last month about stored/2).
	start = derived()
	apply(newEvent(t, k, customer, processortest.T0+41+(stored/2-(1000-200)/2)*30*86400+3600))
	require.InDelta(t, 2, testutil.ToFloat64(m.CheckpointRungResumes), 0)
	late = derived() - start
	require.GreaterOrEqual(t, late, 990)
	require.LessOrEqual(t, late, 4*1010+2*subscription.LadderBaseStep)
	sameAsScratch()

	// New events after the late ones resume from the newest checkpoint again.
	start = derived()
	at += 60
	apply(newEvent(t, k, customer, at))
	require.Less(t, derived()-start, 10)
	require.InDelta(t, 2, testutil.ToFloat64(m.CheckpointRungResumes), 0)
	n := checkpoints()
	t.Logf("late events derived %d events; %d checkpoints stored", late, n)
}
