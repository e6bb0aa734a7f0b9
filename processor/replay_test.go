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

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// applyAll stores and applies events through the projector, as the consumer would.
func bundleApplyAll(b *processortest.Bundle, tb testing.TB, raws ...[]byte) {
	tb.Helper()
	events := make([]projection.Admitted, len(raws))
	for i, raw := range raws {
		a, err := projection.Admit(raw)
		require.NoError(tb, err)
		events[i] = a
	}
	p := &projection.Projector{DB: b.DB.Pool, Rules: b.Rules, Log: processortest.TestLogger(tb), Metrics: projection.NewMetrics(prometheus.NewRegistry())}
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
func changedBy(tb testing.TB, b *processortest.Bundle, want processortest.Expected) int {
	tb.Helper()
	got, err := entitlement.LoadCustomers(tb.Context(), b.DB.Pool, processortest.Keys(want.Customers))
	require.NoError(tb, err)
	n := 0
	for id, w := range want.Customers {
		if !got[id].Same(w) {
			n++
		}
	}
	return n
}

func TestReplayAppliesCurrentRulesAndIsIdempotent(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "r")
	events := k.Population(25) // customers 1, 6, 11, 16, 21 end past_due
	bundleApplyAll(b, t, events...)
	processortest.RequireReadModel(t, b.DB.Pool, processortest.Expect(t, b.Rules, events...))

	env := map[string]string{"DATABASE_URL": b.DB.URL, "PAST_DUE_GRANTS": "false"}
	strict := subscription.DefaultRules()
	strict.PastDueGrants = false

	// One customer: its past_due subscription no longer grants.
	n, stderr := replayCmdOut(t, env, "--customer", "cus_r0001")
	require.Equal(t, 1, n)
	require.Contains(t, stderr, "replay: 1/1 customers")
	c, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: "cus_r0001"})
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
	want := processortest.Expect(t, strict, events...)
	wantChanged := changedBy(t, b, want)
	require.Greater(t, wantChanged, 5, "the new rules change past_due customers and pro and team features")
	n, stderr = replayCmdOut(t, env, "--all")
	require.Equal(t, wantChanged, n)
	require.Contains(t, stderr, "replay: 25/25 customers (100.0%)")
	processortest.RequireReadModel(t, b.DB.Pool, want)
	pro, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: "cus_r0003"})
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
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "u")
	events := k.Population(9)
	bundleApplyAll(b, t, events...)
	_, err := b.DB.Pool.Exec(t.Context(), `DELETE FROM user_entitlements`)
	require.NoError(t, err)

	n, _ := replayCmdOut(t, map[string]string{"DATABASE_URL": b.DB.URL}, "--all")
	require.Zero(t, n, "no customer row changed")
	processortest.RequireReadModel(t, b.DB.Pool, processortest.Expect(t, b.Rules, events...))
}

func TestReplayWhileConsuming(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "w")
	events := processortest.ShuffledWithDuplicates(6, k.Population(60))
	opts := processortest.TestOptions()
	opts.BatchSize = 10
	b.Start(t, opts, b.DB.URL)
	p := &projection.Projector{DB: b.DB.Pool, Rules: b.Rules, Log: processortest.TestLogger(t), Metrics: projection.NewMetrics(prometheus.NewRegistry())}

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	replays := 0
	var replayErr error
	wg.Go(func() {
		for ctx.Err() == nil && replayErr == nil {
			err := operate.Replay(ctx, b.DB.Pool, p, operate.ReplayOptions{All: true, PageSize: 7}, io.Discard, io.Discard)
			if ctx.Err() == nil {
				replayErr = err
				replays++
			}
		}
	})
	b.Publish(t, events...)
	want := processortest.Expect(t, b.Rules, events...)
	processortest.CaughtUp(t, b.DB.Pool, want, 30*time.Second)
	b.Drained(t, opts.Durable, 10*time.Second)
	cancel()
	wg.Wait()
	require.NoError(t, replayErr)
	require.Positive(t, replays)
	processortest.RequireReadModel(t, b.DB.Pool, want)
	t.Logf("%d replays ran while consuming", replays)
}
