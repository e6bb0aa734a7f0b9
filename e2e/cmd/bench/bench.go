package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/e2e/load"
	"github.com/tollgate/tollgate/e2e/natsproc"
	"github.com/tollgate/tollgate/e2e/rig"
	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/pkg/stream"
)

// Sizes of the phases at BENCH_SCALE 1.
const (
	webhookConc     = 32
	webhookRequests = 40_000
	webhookMax      = 10 * time.Second
	warmup          = 1_000
	burstEvents     = 100_000
	burstCustomers  = 20_000
	burstPushConc   = 64
	burstCheckConc  = 16 // clients asking the query API for the burst's answers
	freshSamples    = 200
	checkConc       = 64
	checkFor        = 10 * time.Second
	checkHotUsers   = 1_000
)

// bench is one run of every phase; rows collects the table as it goes.
type bench struct {
	settings
	log      io.Writer
	progress io.Writer
	rows     []row
	errs     []error
	runID    string
}

// row is one line of the results table.
type row struct{ metric, result, goal, met string }

func (b *bench) n(v int) int { return max(int(float64(v)*b.scale), 1) }

func (b *bench) say(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench: "+format+"\n", args...)
}

func (b *bench) fail(err error) {
	b.say("ERROR %v", err)
	b.errs = append(b.errs, err)
}

// run runs every phase and returns the table; a phase that fails is reported and the rest still run
// where they can.
func (b *bench) run(ctx context.Context) (string, error) {
	b.runID = randomHex(3)
	started := time.Now()
	loadStart := rig.LoadAvg()
	tmp, err := os.MkdirTemp("", "tollgate-bench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)

	// Only the burst or the peer: NATS with its default sync, which their goals are stated with.
	syncAlways := b.only == ""
	b.say("starting nats-server (sync_interval: always %t), a fresh database and bin/ services", syncAlways)
	r, err := rig.Start(ctx, rig.Options{
		BinDir: b.binDir, WorkDir: tmp + "/a", DatabaseURL: b.databaseURL,
		DBPrefix: "tollgate_bench_", SyncAlways: syncAlways, Log: b.log,
	})
	if err != nil {
		return "", fmt.Errorf("start: %w", err)
	}
	defer func() {
		if err := r.Close(); err != nil {
			b.say("stop: %v", err)
		}
	}()
	switch b.only {
	case "burst":
		b.burst(ctx, r)
		return b.table(rig.Describe(ctx, r.DatabaseURL, r.NATSVersion), started, loadStart), errors.Join(b.errs...)
	case "peer":
		b.peer(ctx, r)
		return b.table(rig.Describe(ctx, r.DatabaseURL, r.NATSVersion), started, loadStart), errors.Join(b.errs...)
	}
	natsDefault, err := natsproc.Launch(ctx, b.binDir+"/nats-server", natsproc.Options{Dir: tmp + "/b", Log: b.log})
	if err != nil {
		return "", fmt.Errorf("second nats-server (default sync): %w", err)
	}
	defer natsDefault.Stop()
	machine := rig.Describe(ctx, r.DatabaseURL, r.NATSVersion)

	b.webhooks(ctx, r, natsDefault)
	b.publishLimit(ctx, r) // the processor is still stopped
	users := b.burst(ctx, r)
	b.freshness(ctx, r)
	b.checks(ctx, r, users)
	b.checksSpread(ctx, r, users)

	return b.table(machine, started, loadStart), errors.Join(b.errs...)
}

// webhooks measures acceptance: the signature-only baseline, then the listener with NATS fsync
// on every write, then the listener against the default-sync server, then against a three-node
// cluster with a replicated stream. The processor is stopped
// meanwhile so that the listener has the machine to itself, as the baseline has.
func (b *bench) webhooks(ctx context.Context, r *rig.Rig, natsDefault *natsproc.Server) {
	st := r.Stack
	n := b.n(webhookRequests)
	goal := "≥ 5,000 req/s, p99 ≤ 10 ms"
	met := func(res load.Result) string {
		return yesNo(res.Errors == 0 && res.Rate() >= 5000 && res.Quantile(0.99) <= 10*time.Millisecond)
	}

	base, err := startSignatureBaseline(st.WebhookSecret)
	if err != nil {
		b.fail(err)
		return
	}
	baseRes, err := b.sendWebhooks(ctx, base.url, st.WebhookSecret, "base", n)
	_ = base.close()
	if err != nil {
		b.fail(fmt.Errorf("signature baseline: %w", err))
		return
	}
	b.say("signature-only baseline: %s", baseRes)

	proc := st.Process(stack.Processor)
	if err := proc.Stop(20 * time.Second); err != nil {
		b.fail(fmt.Errorf("stop processor: %w", err))
		return
	}
	always, err := b.sendWebhooks(ctx, st.URL(stack.Listener), st.WebhookSecret, "wha", n)
	if err != nil {
		b.fail(fmt.Errorf("listener, sync always: %w", err))
		return
	}
	b.say("listener, NATS sync always: %s", always)
	// The acceptance events are not part of the burst: drop them before the processor sees them.
	if err := purge(ctx, r.NATS.URL()); err != nil {
		b.fail(err)
		return
	}

	// The same listener binary against the default-sync server, then back.
	lis := st.Process(stack.Listener)
	if err := lis.Stop(20 * time.Second); err != nil {
		b.fail(fmt.Errorf("stop listener: %w", err))
		return
	}
	addr := strings.TrimPrefix(st.URL(stack.Listener), "http://")
	other, err := st.StartProcess(ctx, stack.Listener, map[string]string{
		"HTTP_ADDR": addr, "NATS_URL": natsDefault.URL(), "STRIPE_WEBHOOK_SECRETS": st.WebhookSecret,
	})
	if err == nil {
		err = other.WaitReady(ctx, 60*time.Second)
	}
	if err != nil {
		b.fail(fmt.Errorf("listener against default-sync NATS: %w", err))
		return
	}
	nosync, err := b.sendWebhooks(ctx, st.URL(stack.Listener), st.WebhookSecret, "whd", n)
	if err != nil {
		b.fail(fmt.Errorf("listener, default sync: %w", err))
	}
	b.say("listener, NATS default sync: %s", nosync)
	if err := other.Stop(20 * time.Second); err != nil {
		b.fail(err)
	}
	cluster, clusterErr := b.clusterWebhooks(ctx, st, addr, n)
	if clusterErr != nil {
		b.fail(clusterErr)
	}
	if _, err := restart(ctx, lis); err != nil {
		b.fail(err)
	}

	ratio := func(res load.Result) string {
		return fmt.Sprintf("%s; %.0f%% of baseline", summary(res), 100*res.Rate()/baseRes.Rate())
	}
	b.rows = append(b.rows,
		row{fmt.Sprintf("webhook acceptance: listener, NATS `sync_interval: always` (c%d)", webhookConc), ratio(always), goal, met(always)},
		row{fmt.Sprintf("webhook acceptance: listener, NATS default sync (c%d)", webhookConc), ratio(nosync), goal, met(nosync)},
	)
	if clusterErr == nil {
		b.rows = append(b.rows, row{fmt.Sprintf("webhook acceptance: listener, 3-node JetStream cluster on this machine, "+
			"`STREAM_REPLICAS=3`, default sync (c%d)", webhookConc), ratio(cluster), goal, met(cluster)})
	}
	b.rows = append(b.rows,
		row{fmt.Sprintf("signature-only baseline: read, verify, 200 (c%d)", webhookConc), summary(baseRes), "", "—"},
	)
}

// clusterWebhooks measures acceptance against a three-node JetStream cluster on this machine
// (default sync: the quorum, not an fsync, makes an acknowledged event durable) with the stream
// created with STREAM_REPLICAS=3: the same listener binary on addr, started for it and stopped
// after.
func (b *bench) clusterWebhooks(ctx context.Context, st *stack.Stack, addr string, n int) (load.Result, error) {
	dir, err := os.MkdirTemp("", "tollgate-bench-cluster-")
	if err != nil {
		return load.Result{}, err
	}
	defer os.RemoveAll(dir)
	b.say("starting a 3-node JetStream cluster (default sync)")
	nodes, err := natsproc.LaunchCluster(ctx, b.binDir+"/nats-server", dir, 3, natsproc.Options{Log: b.log})
	if err != nil {
		return load.Result{}, fmt.Errorf("3-node cluster: %w", err)
	}
	defer func() {
		for _, s := range nodes {
			s.Stop()
		}
	}()
	lis, err := st.StartProcess(ctx, stack.Listener, map[string]string{
		"HTTP_ADDR": addr, "NATS_URL": natsproc.ClusterURL(nodes), "STREAM_REPLICAS": "3",
		"STRIPE_WEBHOOK_SECRETS": st.WebhookSecret,
	})
	if err == nil {
		err = lis.WaitReady(ctx, 60*time.Second)
	}
	if err != nil {
		return load.Result{}, fmt.Errorf("listener against the 3-node cluster: %w", err)
	}
	res, err := b.sendWebhooks(ctx, "http://"+addr, st.WebhookSecret, "whc", n)
	if err != nil {
		err = fmt.Errorf("listener, 3-node cluster: %w", err)
	} else {
		b.say("listener, 3-node cluster, 3 replicas: %s", res)
	}
	return res, errors.Join(err, lis.Stop(20*time.Second))
}

// sendWebhooks sends warmup then n distinct signed events (customers named after prefix) to
// base's /webhooks/stripe from webhookConc workers and returns the figures of the n. Any answer
// but 200 is an error.
func (b *bench) sendWebhooks(ctx context.Context, base, secret, prefix string, n int) (load.Result, error) {
	return b.sendEvents(ctx, base, secret, lifecycleEvents(prefix+b.runID+"_", (warmup+n)/5+1, 5)[:warmup+n])
}

// sendEvents signs the events and posts them to base, c32: the first warmup of them unmeasured,
// then the rest for at most webhookMax.
func (b *bench) sendEvents(ctx context.Context, base, secret string, events []scenario.Event) (load.Result, error) {
	n := len(events) - warmup
	ws := load.Sign(events, secret)
	conns := load.NewConns(hostPort(base), webhookConc)
	defer conns.Close()
	off := 0
	op := func(_ context.Context, w, i int) error {
		return load.Want200(conns.PostWebhook(w, "/webhooks/stripe", ws[off+i]))
	}
	if res, err := load.Run(ctx, load.Config{Workers: webhookConc, Requests: warmup}, op); err != nil || res.Errors > 0 {
		return res, errors.Join(err, res.FirstErr)
	}
	off = warmup
	res, err := load.Run(ctx, load.Config{Workers: webhookConc, Requests: n, Duration: webhookMax}, op)
	if err == nil && res.Errors > 0 {
		err = fmt.Errorf("%d of %d answers were not 200, first: %w", res.Errors, res.Requests, res.FirstErr)
	}
	return res, err
}

// burst pushes a backlog through the listener with the processor stopped, then starts the
// processor and times it until every event is acknowledged, as its /metrics says, and until every
// user's answer in the query API is right (the last step of its customer). It returns the users
// the backlog created.
func (b *bench) burst(ctx context.Context, r *rig.Rig) []string {
	st := r.Stack
	customers := b.n(b.burstCustomers)
	total := max(b.n(b.burstEvents), 5*customers)
	goalRate := 3000.0
	syncMode := "NATS sync always"
	if b.only == "burst" {
		goalRate, syncMode = 10_000, "NATS default sync"
	}
	metric := fmt.Sprintf("burst drain: %s events over %s customers, pushed through the listener while the processor was stopped (%s)",
		thousands(float64(total)), thousands(float64(customers)), syncMode)

	// Step-major order: every customer's first event, then every second one, ... each round
	// shuffled, as a backlog accumulates during an outage. Customer i has total/customers events
	// (one more for the first total%customers): its lifecycle's first five (created, checkout,
	// incomplete, active, past_due), then renewals alternately active and past_due.
	prefix := "burst" + b.runID + "_"
	start := time.Now().Add(-24 * time.Hour)
	users := make([]string, customers)
	want := make([]string, customers) // the status of each user's last step
	steps := make([][]scenario.Event, customers)
	longest := 0
	for i := range customers {
		cu := scenario.NewCustomer(prefix, i)
		users[i] = cu.UserID
		n := total / customers
		if i < total%customers {
			n++
		}
		t := start.Add(time.Duration(i) * time.Second)
		for _, s := range cu.Lifecycle(t)[:5] {
			steps[i] = append(steps[i], s.Event)
		}
		want[i] = "past_due"
		for k := 5; k < n; k++ {
			status, prev := "active", "past_due"
			if k%2 == 0 {
				status, prev = "past_due", "active"
			}
			steps[i] = append(steps[i], cu.SubscriptionEvent("customer.subscription.updated", status,
				t.Unix()+int64(k), map[string]any{"status": prev}))
			want[i] = status
		}
		longest = max(longest, n)
	}
	events := make([]scenario.Event, 0, total)
	for k := range longest {
		var round []scenario.Event
		for i := range customers {
			if k < len(steps[i]) {
				round = append(round, steps[i][k])
			}
		}
		mrand.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		events = append(events, round...)
	}
	proc := st.Process(stack.Processor)
	if err := proc.Stop(20 * time.Second); err != nil { // a no-op after the acceptance phases
		b.fail(fmt.Errorf("burst: stop processor: %w", err))
		return nil
	}
	ws := load.Sign(events, st.WebhookSecret)
	conns := load.NewConns(hostPort(st.URL(stack.Listener)), burstPushConc)
	defer conns.Close()
	push, err := load.Run(ctx, load.Config{Workers: burstPushConc, Requests: total}, func(_ context.Context, w, i int) error {
		return load.Want200(conns.PostWebhook(w, "/webhooks/stripe", ws[i]))
	})
	if err == nil && push.Errors > 0 {
		err = fmt.Errorf("push: %d answers not 200, first: %w", push.Errors, push.FirstErr)
	}
	if err != nil {
		b.fail(fmt.Errorf("burst: %w", err))
		return nil
	}
	b.say("burst pushed through the listener: %s", push)

	loadAtStart := rig.LoadAvg()
	t0 := time.Now()
	proc, err = restart(ctx, proc)
	if err != nil {
		b.fail(fmt.Errorf("burst: %w", err))
		return nil
	}
	mc := load.NewClient(1)
	defer mc.CloseIdleConnections()
	deadline := t0.Add(10 * time.Minute)
	var acked float64
	for acked < float64(total) {
		if time.Now().After(deadline) {
			b.fail(fmt.Errorf("burst: processor acknowledged %.0f of %d events in 10 minutes", acked, total))
			return nil
		}
		select {
		case <-proc.Done():
			b.fail(errors.New("burst: processor exited while draining"))
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
		if m, err := rig.Scrape(ctx, mc, st.URL(stack.Processor)); err == nil {
			acked = m.Sum("tollgate_processor_messages_total", `outcome="ack"`)
		}
	}
	drain := time.Since(t0)
	rate := float64(total) / drain.Seconds()
	b.say("burst drained: %d events in %s, %.0f events/s (load average %s)", total, drain.Round(time.Millisecond), rate, rig.LoadAvg())

	// The read model must show each user's last step (past_due or active, both granting). Only the
	// burst: every user, asked again until right, and the clock stops at the last right answer;
	// else a sample of 500, asked once.
	qc := load.NewClient(burstCheckConc)
	defer qc.CloseIdleConnections()
	every := max(customers/500, 1)
	if b.only == "burst" {
		every = 1
	}
	var pending []int
	for i := 0; i < customers; i += every {
		pending = append(pending, i)
	}
	var lastErr error
	for attempt := 0; len(pending) > 0 && (attempt == 0 || (b.only == "burst" && time.Now().Before(deadline))); attempt++ {
		// Asked by burstCheckConc clients at once: the clock measures the drain, not one client's
		// round trips (6,000 users one at a time took 2-3 s of a 20 s drain).
		var mu sync.Mutex
		var wrong []int
		var wg sync.WaitGroup
		next := make(chan int)
		for range burstCheckConc {
			wg.Go(func() {
				for i := range next {
					a, err := load.Get(ctx, qc, st.URL(stack.QueryAPI)+"/v1/users/"+users[i]+"/entitlement", st.Token)
					if err != nil || a.Status != http.StatusOK || !strings.Contains(string(a.Body), `"status":"`+want[i]+`"`) ||
						!strings.Contains(string(a.Body), `"premium":true`) {
						mu.Lock()
						lastErr = fmt.Errorf("burst: %s answers %d %.300s (%w), want premium %s", users[i], a.Status, a.Body, err, want[i])
						wrong = append(wrong, i)
						mu.Unlock()
					}
				}
			})
		}
		for _, i := range pending {
			next <- i
		}
		close(next)
		wg.Wait()
		pending = wrong
	}
	right := time.Since(t0)
	bad := len(pending)
	if bad > 0 {
		b.fail(lastErr)
	}
	loadAtEnd := rig.LoadAvg()
	met := yesNo(rate >= goalRate && bad == 0)
	result := fmt.Sprintf("**%s events/s** (%.1f s from processor start to the last ack)", thousands(rate), drain.Seconds())
	if b.only == "burst" {
		rightRate := float64(total) / right.Seconds()
		met = yesNo(rightRate >= goalRate && bad == 0)
		result = fmt.Sprintf("**%s events/s** to the last right answer (%.1f s from processor start; every one of %s users asked after the last ack, at %.1f s, %s events/s); load average %s at start, %s at end",
			thousands(rightRate), right.Seconds(), thousands(float64(customers)), drain.Seconds(), thousands(rate), loadAtStart, loadAtEnd)
	}
	if bad > 0 {
		result += fmt.Sprintf("; %d users answered wrong", bad)
	}
	b.say("burst: %s", result)
	goal := fmt.Sprintf("≥ %s events/s", thousands(goalRate))
	b.rows = append(b.rows,
		row{metric, result, goal, met},
		row{fmt.Sprintf("burst push: the same events into the listener (c%d, %s)", burstPushConc, syncMode), summary(push), "", "—"},
	)
	return users
}

// freshness sends one event at a time and measures from the listener's 200 until the query
// API's answer reflects it: a new customer's user appearing, then its subscription granting.
func (b *bench) freshness(ctx context.Context, r *rig.Rig) {
	st := r.Stack
	c := load.NewClient(2)
	defer c.CloseIdleConnections()
	url := st.URL(stack.Listener) + "/webhooks/stripe"
	var samples []time.Duration
	n := b.n(freshSamples)
	for i := 0; len(samples) < n; i++ {
		cu := scenario.NewCustomer("fresh"+b.runID+"_", i)
		now := time.Now().Unix()
		for _, step := range []struct {
			ev   scenario.Event
			want string
		}{
			{cu.CustomerCreated(now), `"user_id":"` + cu.UserID + `"`},
			{cu.SubscriptionEvent("customer.subscription.created", "active", now+1, nil), `"premium":true`},
		} {
			w := load.Sign([]scenario.Event{step.ev}, st.WebhookSecret)[0]
			if err := load.Want200(load.PostWebhook(ctx, c, url, w)); err != nil {
				b.fail(fmt.Errorf("freshness: post %s: %w", step.ev.ID, err))
				return
			}
			t0 := time.Now()
			for {
				a, err := load.Get(ctx, c, st.URL(stack.QueryAPI)+"/v1/users/"+cu.UserID+"/entitlement", st.Token)
				if err == nil && a.Status == http.StatusOK && strings.Contains(string(a.Body), step.want) {
					break
				}
				if time.Since(t0) > 30*time.Second {
					b.fail(fmt.Errorf("freshness: %s not visible after 30 s (last: %d %.200s %w)", step.ev.ID, a.Status, a.Body, err))
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Millisecond):
				}
			}
			samples = append(samples, time.Since(t0))
		}
	}
	res := load.Result{Latencies: samples}
	sortDurations(res.Latencies)
	p50, p99 := res.Quantile(0.5), res.Quantile(0.99)
	b.say("freshness: %d samples, p50 %s, p99 %s, max %s", len(samples), load.FormatMs(p50), load.FormatMs(p99), load.FormatMs(res.Quantile(1)))
	b.rows = append(b.rows, row{
		fmt.Sprintf("freshness: listener's 200 → query API shows the change (%d events, one at a time, polled every 1 ms)", len(samples)),
		fmt.Sprintf("p50 %s, **p99 %s** (max %s)", load.FormatMs(p50), load.FormatMs(p99), load.FormatMs(res.Quantile(1))),
		"p99 ≤ 50 ms", yesNo(p99 <= 50*time.Millisecond),
	})
}

// checks measures GET /v1/users/{id}/entitlement at concurrency 64 over the burst's users,
// after a bare echo handler that answers a real answer's bytes.
func (b *bench) checks(ctx context.Context, r *rig.Rig, users []string) {
	if len(users) == 0 {
		b.fail(errors.New("checks: no users in the read model (burst failed)"))
		return
	}
	st := r.Stack
	c := load.NewClient(1)
	defer c.CloseIdleConnections()
	sample, err := load.Get(ctx, c, st.URL(stack.QueryAPI)+"/v1/users/"+users[0]+"/entitlement", st.Token)
	if err := load.Want200(sample, err); err != nil {
		b.fail(fmt.Errorf("checks: %w", err))
		return
	}
	bare, err := startBareHandler(sample.Body)
	if err != nil {
		b.fail(err)
		return
	}
	dur := time.Duration(float64(checkFor) * b.scale)
	measure := func(base string, users []string) (load.Result, error) {
		conns := load.NewConns(hostPort(base), checkConc)
		defer conns.Close()
		op := func(_ context.Context, w, i int) error {
			u := users[(i*7919)%len(users)]
			return load.Want200(conns.Get(w, "/v1/users/"+u+"/entitlement", st.Token))
		}
		if _, err := load.Run(ctx, load.Config{Workers: checkConc, Requests: warmup}, op); err != nil {
			return load.Result{}, err
		}
		res, err := load.Run(ctx, load.Config{Workers: checkConc, Duration: dur}, op)
		if err == nil && res.Errors > 0 {
			err = fmt.Errorf("%d answers not 200, first: %w", res.Errors, res.FirstErr)
		}
		return res, err
	}
	bareRes, err := measure(bare.url, users)
	_ = bare.close()
	if err != nil {
		b.fail(fmt.Errorf("checks, bare handler: %w", err))
		return
	}
	b.say("bare handler: %s", bareRes)
	// Two working sets: a hot one, and every user read in a fixed cycle (checksSpread reads them
	// at random); the cache keeps answers until they change, within its byte budget.
	for _, set := range []struct {
		users []string
		what  string
	}{
		{users[:min(len(users), checkHotUsers)], "hot set"},
		{users, "all, read uniformly"},
	} {
		mc := load.NewClient(1)
		before, _ := rig.Scrape(ctx, mc, st.URL(stack.QueryAPI))
		res, err := measure(st.URL(stack.QueryAPI), set.users)
		after, _ := rig.Scrape(ctx, mc, st.URL(stack.QueryAPI))
		mc.CloseIdleConnections()
		if err != nil {
			b.fail(fmt.Errorf("checks, queryapi (%d users): %w", len(set.users), err))
		}
		hits := after.Sum("tollgate_queryapi_cache_hits_total") - before.Sum("tollgate_queryapi_cache_hits_total")
		misses := after.Sum("tollgate_queryapi_cache_misses_total") - before.Sum("tollgate_queryapi_cache_misses_total")
		hitRate := 100 * hits / max(hits+misses, 1)
		b.say("queryapi, %d users: %s; cache hits %.0f%%", len(set.users), res, hitRate)
		b.rows = append(b.rows, row{
			fmt.Sprintf("entitlement checks: query API, %s users (%s; c%d)", thousands(float64(len(set.users))), set.what, checkConc),
			fmt.Sprintf("%s; %.0f%% of bare handler; cache hits %.0f%%", summary(res), 100*res.Rate()/bareRes.Rate(), hitRate),
			"≥ 20,000 req/s, p99 ≤ 5 ms",
			yesNo(err == nil && res.Rate() >= 20000 && res.Quantile(0.99) <= 5*time.Millisecond),
		})
	}
	b.rows = append(b.rows,
		row{fmt.Sprintf("bare handler: echo, a fixed %d-byte real answer (c%d)", len(sample.Body), checkConc), summary(bareRes), "", "—"})
}

// purge drops every message of the stream (the processor is stopped; its consumer moves past them).
func purge(ctx context.Context, url string) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	s, err := js.Stream(ctx, stream.Name)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	if err := s.Purge(ctx); err != nil {
		return fmt.Errorf("purge stream %s: %w", stream.Name, err)
	}
	return nil
}

// restart starts a stopped service again and waits until it is ready.
func restart(ctx context.Context, p *stack.Process) (*stack.Process, error) {
	np, err := p.Restart(ctx)
	if err != nil {
		return nil, fmt.Errorf("restart %s: %w", p.Name, err)
	}
	if err := np.WaitReady(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	return np, nil
}

// lifecycleEvents builds the first perCustomer lifecycle events of n customers named after prefix,
// customer by customer.
func lifecycleEvents(prefix string, n, perCustomer int) []scenario.Event {
	start := time.Now().Add(-time.Hour)
	events := make([]scenario.Event, 0, n*perCustomer)
	for i := range n {
		for _, s := range scenario.NewCustomer(prefix, i).Lifecycle(start)[:perCustomer] {
			events = append(events, s.Event)
		}
	}
	return events
}

// hostPort is the host:port of an http:// base URL.
func hostPort(base string) string { return strings.TrimPrefix(base, "http://") }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
