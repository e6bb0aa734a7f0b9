package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/e2e/load"
	"github.com/tollgate/tollgate/e2e/rig"
	"github.com/tollgate/tollgate/e2e/stack"
)

// spreadUsers is the widest spread the cache rows read: more users than its default 64 MiB holds.
const spreadUsers = 200_000

// checksSpread measures checks with users drawn uniformly at random (not in a cycle, the worst
// case of an LRU-like cache) at three spreads: the hot set, the burst's users, and 200,000
// users, the burst's plus rows written straight into the read model for this row only. Each is
// run beside the bare handler in the same phase; the rows give the rate over the hot set's and
// the p99 over the bare handler's, and the 200,000 row the cache's bytes against its budget.
func (b *bench) checksSpread(ctx context.Context, r *rig.Rig, users []string) {
	if len(users) == 0 {
		return // checks has said why
	}
	st := r.Stack
	extra, err := b.fillUsers(ctx, r.DatabaseURL, b.n(spreadUsers)-len(users))
	if err != nil {
		b.fail(fmt.Errorf("checks spread: %w", err))
		return
	}
	all := append(append([]string{}, users...), extra...)
	c := load.NewClient(1)
	defer c.CloseIdleConnections()
	sample, err := load.Get(ctx, c, st.URL(stack.QueryAPI)+"/v1/users/"+users[0]+"/entitlement", st.Token)
	if err := load.Want200(sample, err); err != nil {
		b.fail(fmt.Errorf("checks spread: %w", err))
		return
	}
	bare, err := startBareHandler(sample.Body)
	if err != nil {
		b.fail(err)
		return
	}
	defer func() { _ = bare.close() }()
	dur := time.Duration(float64(checkFor) * b.scale)
	measure := func(base string, set []string, warm int) (load.Result, error) {
		conns := load.NewConns(hostPort(base), checkConc)
		defer conns.Close()
		rnds := make([]*mrand.Rand, checkConc)
		for i := range rnds {
			rnds[i] = mrand.New(mrand.NewPCG(uint64(i), 29))
		}
		op := func(_ context.Context, w, i int) error {
			u := set[rnds[w].IntN(len(set))]
			if i < warm { // every key once first, as a running instance would have seen them
				u = set[i%len(set)]
			}
			return load.Want200(conns.Get(w, "/v1/users/"+u+"/entitlement", st.Token))
		}
		if warm > 0 {
			if _, err := load.Run(ctx, load.Config{Workers: checkConc, Requests: warm}, op); err != nil {
				return load.Result{}, err
			}
		}
		warm = 0
		res, err := load.Run(ctx, load.Config{Workers: checkConc, Duration: dur}, op)
		if err == nil && res.Errors > 0 {
			err = fmt.Errorf("%d answers not 200, first: %w", res.Errors, res.FirstErr)
		}
		return res, err
	}
	var hot load.Result
	for _, set := range []struct {
		users []string
		what  string
	}{
		{users[:min(len(users), checkHotUsers)], "hot set"},
		{users, "read uniformly at random"},
		{all, "read uniformly at random; more than the cache's budget holds"},
	} {
		bareRes, err := measure(bare.url, set.users, 0)
		if err != nil {
			b.fail(fmt.Errorf("checks spread, bare handler: %w", err))
			return
		}
		mc := load.NewClient(1)
		before, _ := rig.Scrape(ctx, mc, st.URL(stack.QueryAPI))
		res, err := measure(st.URL(stack.QueryAPI), set.users, min(len(set.users), 50_000))
		after, _ := rig.Scrape(ctx, mc, st.URL(stack.QueryAPI))
		mc.CloseIdleConnections()
		if err != nil {
			b.fail(fmt.Errorf("checks spread, queryapi (%d users): %w", len(set.users), err))
			continue
		}
		hits := after.Sum("tollgate_queryapi_cache_hits_total") - before.Sum("tollgate_queryapi_cache_hits_total")
		misses := after.Sum("tollgate_queryapi_cache_misses_total") - before.Sum("tollgate_queryapi_cache_misses_total")
		hitRate := 100 * hits / max(hits+misses, 1)
		cacheBytes, budget := after.Sum("tollgate_queryapi_cache_bytes"), after.Sum("tollgate_queryapi_cache_budget_bytes")
		b.say("queryapi spread, %d users: %s; bare %s; cache hits %.0f%%, %.1f of %.0f MiB", len(set.users), res, bareRes,
			hitRate, cacheBytes/(1<<20), budget/(1<<20))
		result := fmt.Sprintf("%s; bare handler beside it %s, p99 ×%.1f of bare; cache hits %.0f%%, %.1f of %.0f MiB",
			summary(res), summary(bareRes), float64(res.Quantile(0.99))/float64(max(bareRes.Quantile(0.99), 1)),
			hitRate, cacheBytes/(1<<20), budget/(1<<20))
		goal, met := "", "—"
		if hot.Requests == 0 {
			hot = res
		} else {
			result += fmt.Sprintf("; ×%.2f of the hot set", res.Rate()/hot.Rate())
			if len(set.users) == len(all) {
				goal, met = "cache within its budget", yesNo(cacheBytes <= budget && budget > 0)
			} else {
				goal = "≥ 0.8× the hot set, p99 ≤ 2× bare"
				met = yesNo(res.Rate() >= 0.8*hot.Rate() && res.Quantile(0.99) <= 2*bareRes.Quantile(0.99))
			}
		}
		b.rows = append(b.rows, row{
			fmt.Sprintf("entitlement checks: query API, %s users (%s; c%d)", thousands(float64(len(set.users))), set.what, checkConc),
			result, goal, met,
		})
	}
}

// fillUsers writes n premium users with one customer each straight into the read model (the
// processor's path would take minutes for 180,000), in the shape the processor writes and in the
// scope the bench's query API answers (test mode, the platform), and returns their ids.
func (b *bench) fillUsers(ctx context.Context, databaseURL string, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	prefix := "spread" + b.runID + "_"
	const subs = `jsonb_build_array(jsonb_build_object('id', 'sub_' || $2 || i, 'customer_id', 'cus_' || $2 || i,
		'status', 'active', 'price_ids', jsonb_build_array('price_pro_monthly'), 'product_ids', jsonb_build_array('prod_pro'),
		'current_period_end', '2026-12-22T10:00:00Z', 'cancel_at_period_end', false, 'trial_end', null, 'ended_at', null))`
	for _, stmt := range []string{
		`INSERT INTO customer_entitlements (livemode, account, customer_id, user_id, premium, status, features, subscriptions,
			last_event_id, last_event_created)
		SELECT false, '', 'cus_' || $2 || i, 'u_' || $2 || i, true, 'active', '{premium}', ` + subs + `, 'evt_' || $2 || i, now()
		FROM generate_series(0, $1::int - 1) AS i`,
		`INSERT INTO user_entitlements (livemode, account, user_id, customer_ids, premium, status, features, subscriptions,
			last_event_id, last_event_created)
		SELECT false, '', 'u_' || $2 || i, ARRAY['cus_' || $2 || i], true, 'active', '{premium}', ` + subs + `, 'evt_' || $2 || i, now()
		FROM generate_series(0, $1::int - 1) AS i`,
	} {
		if _, err := conn.Exec(ctx, stmt, n, prefix); err != nil {
			return nil, fmt.Errorf("fill the read model: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, `ANALYZE customer_entitlements, user_entitlements`); err != nil {
		return nil, fmt.Errorf("analyze: %w", err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("u_%s%d", prefix, i)
	}
	return ids, nil
}
