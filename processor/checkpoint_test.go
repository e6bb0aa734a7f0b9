package main

import (
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// TestCheckpointsKeepTheAnswer applies a population's events one batch at a time, as the
// consumer does, in an order with late arrivals (so some customers resume from their checkpoint
// and some are derived from scratch), and checks that the read model is the derivation of the
// whole histories, that every customer has a checkpoint, and that `processor replay --all`,
// which derives from scratch and rewrites the checkpoints, changes nothing.
func TestCheckpointsKeepTheAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := newKit(t, "c")
	events := k.population(12)
	r := rand.New(rand.NewPCG(12, 1))
	delivered := append([][]byte(nil), events...)
	for range len(delivered) / 8 { // a few late arrivals in an otherwise time-ordered feed
		i, j := r.IntN(len(delivered)), r.IntN(len(delivered))
		delivered[i], delivered[j] = delivered[j], delivered[i]
	}
	m := newMetrics(prometheus.NewRegistry())
	p := &projector{db: b.db.Pool, rules: b.rules, cache: newEventCache(1 << 20), log: testLogger(t), metrics: m}
	for i := 0; i < len(delivered); i += 3 {
		batch := make([]admitted, 0, 3)
		for _, raw := range delivered[i:min(i+3, len(delivered))] {
			a, err := admit(raw)
			require.NoError(t, err)
			batch = append(batch, a)
		}
		_, err := p.apply(t.Context(), projectionInput{Events: batch})
		require.NoError(t, err)
	}
	want := expect(t, b.rules, events...)
	requireReadModel(t, b.db.Pool, want)
	require.Positive(t, testutil.ToFloat64(m.checkpointMisses), "some events arrived before their customer's checkpoint")

	var n int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(DISTINCT (livemode, account, customer_id)) FROM customer_checkpoints`).Scan(&n))
	require.Equal(t, len(want.customers), n)

	// A checkpoint that lies is trusted by the consumer, never by replay.
	_, err := b.db.Pool.Exec(t.Context(), `UPDATE customer_checkpoints SET state = jsonb_set(state, '{fold,metadata_user}', '"u_bogus"')`)
	require.NoError(t, err)
	changed, _ := replayCmdOut(t, map[string]string{"DATABASE_URL": b.db.URL}, "--all")
	require.Zero(t, changed)
	var bogus int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM customer_checkpoints WHERE state->'fold'->>'metadata_user' = 'u_bogus'`).Scan(&bogus))
	require.Zero(t, bogus, "replay rewrites every checkpoint")
	requireReadModel(t, b.db.Pool, want)
}
