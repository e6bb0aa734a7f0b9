package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// applyAll stores and applies events through the projector, as the consumer would.
func (b *bundle) applyAll(tb testing.TB, raws ...[]byte) {
	tb.Helper()
	events := make([]projection.Admitted, len(raws))
	for i, raw := range raws {
		a, err := projection.Admit(raw)
		require.NoError(tb, err)
		events[i] = a
	}
	p := &projection.Projector{DB: b.db.Pool, Rules: b.rules, Log: testLogger(tb), Metrics: projection.NewMetrics(prometheus.NewRegistry())}
	_, err := p.Apply(tb.Context(), projection.Input{Events: events})
	require.NoError(tb, err)
}

var changedRE = regexp.MustCompile(`: (\d+) entitlements changed`)

// replayCmdOut runs `processor replay args...` with env and returns the number of changed
// entitlements it reported, and its stderr.
func replayCmdOut(tb testing.TB, env map[string]string, args ...string) (int, string) {
	tb.Helper()
	var out, errOut bytes.Buffer
	err := run(tb.Context(), append([]string{"replay"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	require.NoError(tb, err, "stdout: %s\nstderr: %s", out.String(), errOut.String())
	m := changedRE.FindStringSubmatch(out.String())
	require.NotNil(tb, m, "summary line in %q", out.String())
	n, err := strconv.Atoi(m[1])
	require.NoError(tb, err)
	return n, errOut.String()
}

// changedBy counts the customers whose stored row differs from want.
func changedBy(tb testing.TB, b *bundle, want expected) int {
	tb.Helper()
	got, err := entitlement.LoadCustomers(tb.Context(), b.db.Pool, keys(want.customers))
	require.NoError(tb, err)
	n := 0
	for id, w := range want.customers {
		if !got[id].Same(w) {
			n++
		}
	}
	return n
}

func TestReplayAppliesCurrentRulesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := newKit(t, "r")
	events := k.population(25) // customers 1, 6, 11, 16, 21 end past_due
	b.applyAll(t, events...)
	requireReadModel(t, b.db.Pool, expect(t, b.rules, events...))

	env := map[string]string{"DATABASE_URL": b.db.URL, "PAST_DUE_GRANTS": "false"}
	strict := subscription.DefaultRules()
	strict.PastDueGrants = false

	// One customer: its past_due subscription no longer grants.
	n, stderr := replayCmdOut(t, env, "--customer", "cus_r0001")
	require.Equal(t, 1, n)
	require.Contains(t, stderr, "replay: 1/1 customers")
	c, err := entitlement.GetCustomer(t.Context(), b.db.Pool, scope.Key{ID: "cus_r0001"})
	require.NoError(t, err)
	require.False(t, c.Premium)
	require.Equal(t, "past_due", c.Status)
	n, _ = replayCmdOut(t, env, "--customer", "cus_r0001")
	require.Zero(t, n, "a second replay changes nothing")

	// Everyone, with a plans file on top.
	plans := filepath.Join(t.TempDir(), "plans.json")
	require.NoError(t, os.WriteFile(plans, []byte(`{"price_pro": ["pro", "export"], "price_team": ["team"]}`), 0o600))
	env["PLANS_FILE"] = plans
	strict.Plans = map[string][]string{"price_pro": {"export", "pro"}, "price_team": {"team"}}
	want := expect(t, strict, events...)
	wantChanged := changedBy(t, b, want)
	require.Greater(t, wantChanged, 5, "the new rules change past_due customers and pro and team features")
	n, stderr = replayCmdOut(t, env, "--all")
	require.Equal(t, wantChanged, n)
	require.Contains(t, stderr, "replay: 25/25 customers (100.0%)")
	requireReadModel(t, b.db.Pool, want)
	pro, err := entitlement.GetCustomer(t.Context(), b.db.Pool, scope.Key{ID: "cus_r0003"})
	require.NoError(t, err)
	require.Equal(t, []string{"export", "pro", "team"}, pro.Features, "a pro and a team subscription")

	n, _ = replayCmdOut(t, env, "--all")
	require.Zero(t, n, "a second replay changes nothing")

	var out, errOut bytes.Buffer
	err = run(t.Context(), []string{"replay", "--customer", "cus_nobody"}, func(k string) string { return env[k] }, &out, &errOut)
	require.ErrorContains(t, err, "customer cus_nobody has no stored events")
}

func TestReplayRepairsUserRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := newKit(t, "u")
	events := k.population(9)
	b.applyAll(t, events...)
	_, err := b.db.Pool.Exec(t.Context(), `DELETE FROM user_entitlements`)
	require.NoError(t, err)

	n, _ := replayCmdOut(t, map[string]string{"DATABASE_URL": b.db.URL}, "--all")
	require.Zero(t, n, "no customer row changed")
	requireReadModel(t, b.db.Pool, expect(t, b.rules, events...))
}

func TestReplayWhileConsuming(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := newKit(t, "w")
	events := shuffledWithDuplicates(6, k.population(60))
	opts := testOptions()
	opts.BatchSize = 10
	b.start(t, opts, b.db.URL)
	p := &projection.Projector{DB: b.db.Pool, Rules: b.rules, Log: testLogger(t), Metrics: projection.NewMetrics(prometheus.NewRegistry())}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	replays := 0
	var replayErr error
	wg.Go(func() {
		for ctx.Err() == nil && replayErr == nil {
			err := operate.Replay(ctx, b.db.Pool, p, operate.ReplayOptions{All: true, PageSize: 7}, io.Discard, io.Discard)
			if ctx.Err() == nil {
				replayErr = err
				replays++
			}
		}
	})
	b.publish(t, events...)
	want := expect(t, b.rules, events...)
	caughtUp(t, b.db.Pool, want, 30*time.Second)
	b.drained(t, opts.Durable, 10*time.Second)
	cancel()
	wg.Wait()
	require.NoError(t, replayErr)
	require.Positive(t, replays)
	requireReadModel(t, b.db.Pool, want)
	t.Logf("%d replays ran while consuming", replays)
}
