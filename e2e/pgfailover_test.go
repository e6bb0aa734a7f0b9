package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/natsproc"
	"github.com/tollgate/tollgate/e2e/pgcluster"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/testkit/wait"
)

const (
	// failoverCustomers is the size of each failover round's traffic: about 1,100 events and
	// 1,600 copies (120 users), sent for about 16 seconds at failoverSendEvery, so that the kill
	// falls in the middle of it and traffic keeps flowing through the promotion.
	failoverCustomers = 160
	failoverSendEvery = 10 * time.Millisecond
	// laggingFor is how long the standby's walreceiver is stopped before the primary's kill in
	// the asynchronous round: a standby that lags, as under load or across zones.
	laggingFor = 1500 * time.Millisecond
)

// TestPostgresFailover loses the Postgres primary under traffic and promotes its standby, as a
// managed Postgres's failover does (RDS Multi-AZ, Patroni, Cloud SQL HA): a private primary
// and a hot standby made from it with pg_basebackup, streaming replication between them; two
// processors and a query API in notify mode with a multi-host DATABASE_URL (primary, standby,
// target_session_attrs=read-write), and a query API in max-age mode on the standby alone.
// Shuffled, duplicated traffic, retried like Stripe retries, goes to the listener while the app's
// notification endpoint is down (so notifications pile up in the outbox); then the primary is
// killed (SIGKILL of every one of its processes) and the standby promoted.
//
// Round sync replicates synchronously (synchronous_standby_names, synchronous_commit=on): the
// standby has every commit. Round async replicates asynchronously (Postgres's default) with the
// standby made to lag on demand: its walreceiver is stopped (SIGSTOP) laggingFor before the kill
// and killed after it, so the last commits of the primary never reach it. In both rounds:
//
//   - the processors find the new primary by themselves;
//   - nothing acknowledged is lost or applied twice (the crash tests' invariants, on both query
//     APIs), in the async round too: the commits the standby never got are given back by the
//     stream's retention window, re-read when the processor sees the database's timeline change;
//   - the query API on the promoted node keeps answering;
//   - every notification recorded before the kill is delivered once the app is back.
//
// It logs the figures: kill to the first event applied on the new primary, 503s at the listener,
// answers served by each query API meanwhile, events the promotion lost before re-application.
func TestPostgresFailover(t *testing.T) {
	binDir, natsBin := buildBinaries(t)
	for _, round := range []struct {
		name string
		sync bool
	}{{"sync", true}, {"async_lagging_standby", false}} {
		t.Run(round.name, func(t *testing.T) {
			// Together: each round spends most of its time waiting (for the promotion, for the
			// old primary's notification leases to expire), not on the CPU.
			t.Parallel()
			runFailover(t, binDir, natsBin, round.sync)
		})
	}
}

// failoverEnv is a failover round's setup on top of the crash tests' environment.
type failoverEnv struct {
	*crashEnv
	primary, standby *pgcluster.Cluster
	sink             *notifySink
	onStandby        string // the max-age query API's base URL
	reads            *reads
}

func runFailover(t *testing.T, binDir, natsBin string, synchronous bool) {
	seed := crashSeed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	f := &failoverEnv{crashEnv: &crashEnv{http: &http.Client{Timeout: 10 * time.Second}}, sink: newNotifySink(t)}
	// Down before the kill, then up for good: the delivery's backoff then depends on the outage
	// alone, not on failures on purpose after it.
	f.sink.reliable = true
	f.primary = pgcluster.Start(t)
	f.pg = f.primary
	admin, err := pgx.Connect(ctx, f.primary.URL("postgres"))
	require.NoError(t, err)
	defer func() { _ = admin.Close(ctx) }()
	_, err = admin.Exec(ctx, "CREATE DATABASE tollgate")
	require.NoError(t, err)
	f.standby = pgcluster.StartStandby(t, f.primary, "standby", pgcluster.Options{})
	if synchronous {
		// Only now that the standby runs: a commit waits for it.
		for _, q := range []string{"ALTER SYSTEM SET synchronous_standby_names = 'standby'",
			"ALTER SYSTEM SET synchronous_commit = 'on'", "SELECT pg_reload_conf()"} {
			_, err = admin.Exec(ctx, q)
			require.NoError(t, err, q)
		}
	}
	wantState := map[bool]string{true: "sync", false: "async"}[synchronous]
	wait.For(t, 30*time.Second, "the standby streaming ("+wantState+")", func() bool {
		var state string
		conn, err := pgx.Connect(ctx, f.primary.URL("postgres"))
		if err != nil {
			return false
		}
		defer func() { _ = conn.Close(ctx) }()
		err = conn.QueryRow(ctx, `SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby' AND state = 'streaming'`).Scan(&state)
		return err == nil && state == wantState
	})

	f.nats = natsproc.Start(t, natsBin)
	both := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/tollgate?sslmode=disable&target_session_attrs=read-write",
		f.primary.Port, f.standby.Port)
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
	f.st, err = stack.Start(ctx, stack.Options{
		BinDir: binDir, DataDir: t.TempDir(), NATSURL: f.nats.URL(), DatabaseURL: both,
		ListenerAddr: addr(), QueryAPIAddr: addr(), ProcessorAddr: addr(), Log: servicesLog(t),
		ProcessorEnv: map[string]string{"NOTIFY_URLS": f.sink.srv.URL + "/hooks", "NOTIFY_SECRET": f.sink.secret},
	})
	require.NoError(t, err, "start the stack")
	t.Cleanup(func() { _ = f.st.Stop() })
	_, err = f.st.AddInstance(ctx, stack.Processor, "processor-2", addr())
	require.NoError(t, err, "second processor")
	qa, err := f.st.AddInstanceEnv(ctx, stack.QueryAPI, "queryapi-standby", addr(), map[string]string{
		"DATABASE_URL": f.standby.URL("tollgate"), "QUERYAPI_CACHE_MODE": "max-age", "QUERYAPI_CACHE_MAX_AGE": "1s",
	})
	require.NoError(t, err, "query API on the standby")
	f.onStandby = qa.URL()
	f.queryAPIs = []string{f.st.URL(stack.QueryAPI), f.onStandby}

	f.db, err = pgxpool.New(ctx, both)
	require.NoError(t, err)
	t.Cleanup(f.db.Close)
	nc, err := nats.Connect(f.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	f.js, err = jetstream.New(nc)
	require.NoError(t, err)

	f.plan = newCrashPlan(rand.New(rand.NewPCG(seed, seed>>1)), map[bool]string{true: "fs", false: "fa"}[synchronous], failoverCustomers)
	f.traffic = newTraffic([]string{f.st.URL(stack.Listener) + "/webhooks/stripe"}, f.st.WebhookSecret, f.plan, failoverSendEvery)
	f.reads = startReads(t, f.crashEnv, f.queryAPIs)

	tr := f.traffic
	started := time.Now()
	tr.start(t)
	wait.For(t, 60*time.Second, "a quarter of the events accepted before the app goes down", func() bool {
		return tr.acceptedEvents() >= len(f.plan.events)/4
	})
	f.sink.hold(true)
	wait.For(t, 60*time.Second, "two fifths of the events accepted before the kill", func() bool {
		return tr.acceptedEvents() >= len(f.plan.events)*2/5
	})

	var receiver int
	if !synchronous {
		receiver, err = f.standby.WalReceiverPid(ctx)
		require.NoError(t, err)
		require.Positive(t, receiver, "the standby's walreceiver runs")
		require.NoError(t, syscall.Kill(receiver, syscall.SIGSTOP), "stop the walreceiver")
		time.Sleep(laggingFor)
	}
	acceptedAtKill := tr.acceptedEvents()
	f.primary.Kill()
	killed := time.Now()
	if receiver != 0 {
		// The WAL it had not written yet dies with it (the postmaster restarts the standby's
		// processes: a child killed by a signal is a crash to it).
		require.NoError(t, syscall.Kill(receiver, syscall.SIGKILL), "kill the walreceiver")
	}
	standbyDB := f.standby.URL("tollgate")
	var base int
	wait.For(t, 30*time.Second, "the standby answering after the kill", func() bool {
		n, err := countEvents(ctx, standbyDB)
		base = n
		return err == nil
	})
	require.NoError(t, f.standby.Promote(ctx), "promote the standby")
	promoted := time.Now()
	f.pg = f.standby

	// The notifications the new primary holds undelivered, recorded before the kill.
	var pending []string
	{
		conn, err := pgx.Connect(ctx, standbyDB)
		require.NoError(t, err)
		rows, err := conn.Query(ctx, `SELECT id FROM notification_outbox WHERE delivered_at IS NULL AND created_at < $1`, killed)
		require.NoError(t, err)
		pending, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		_ = conn.Close(ctx)
	}
	var applied time.Time
	wait.For(t, 60*time.Second, "an event applied on the new primary", func() bool {
		n, err := countEvents(ctx, standbyDB)
		if err == nil && n > base {
			applied = time.Now()
			return true
		}
		return false
	})
	f.sink.hold(false)

	during := func(a attempt) bool { return a.end.After(killed) && a.start.Before(applied) }
	qaFigures := f.reads.during(killed, applied)
	t.Logf("primary killed after %d events accepted (%s replication): the standby promoted %s after the kill; "+
		"first event applied on the new primary %s after the kill; listener meanwhile: %d answers 200, %d 503, %d without answer; "+
		"query APIs meanwhile: %s",
		acceptedAtKill, wantState, promoted.Sub(killed).Round(time.Millisecond), applied.Sub(killed).Round(time.Millisecond),
		tr.count(func(a attempt) bool { return during(a) && a.status == http.StatusOK }),
		tr.count(func(a attempt) bool { return during(a) && a.status == http.StatusServiceUnavailable }),
		tr.count(func(a attempt) bool { return during(a) && a.status == 0 }), qaFigures)
	require.Zero(t, tr.count(func(a attempt) bool { return during(a) && a.status == http.StatusServiceUnavailable }),
		"the listener needs no Postgres: the stream buffers the events while there is no primary")

	tr.wait(t, sendDeadline+30*time.Second)
	t.Logf("traffic done after %s: %s", time.Since(started).Round(time.Millisecond), tr.summary())

	// Before the derivations are compared: were acknowledged events lost?
	var lost []string
	wait.For(t, 60*time.Second, "the processors idle, or every event stored", func() bool {
		lost = f.lostEvents(ctx, t)
		info, err := f.consumerInfo(ctx)
		return len(lost) == 0 || err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if len(lost) > 0 {
		time.Sleep(5 * time.Second) // the last chance of a late re-application
		lost = f.lostEvents(ctx, t)
	}
	t.Logf("events answered 200 and missing from the promoted database once the processors were idle: %d of %d (%s replication)",
		len(lost), len(f.plan.events), wantState)
	require.Empty(t, lost, "acknowledged events lost in the failover")

	f.waitDrained(t, 120*time.Second)
	f.checkInvariants(t)
	failed := f.reads.failedAfter(f.onStandby, applied.Add(5*time.Second))
	require.Zero(t, failed, "the query API on the promoted node answers once it serves as primary")

	// Every notification recorded before the kill is delivered, and every user's last one is the
	// query API's final answer.
	// Up to a minute more than the rest: a notification the old primary had leased to a
	// deliverer waits out its lease (a minute) before another takes it.
	undelivered := func() []string {
		var ids []string
		for _, id := range pending {
			if !f.sink.delivered(id) {
				ids = append(ids, id)
			}
		}
		return ids
	}
	for deadline := time.Now().Add(150 * time.Second); len(undelivered()) > 0; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			rows, err := f.db.Query(ctx, `SELECT id || ': attempts ' || attempts || ', next attempt in ' || (next_attempt_at - now())::text ||
				', delivered ' || coalesce(delivered_at::text, 'no') || ', last error ' || coalesce(last_error, 'none')
				FROM notification_outbox WHERE id = ANY($1)`, undelivered())
			require.NoError(t, err)
			states, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			t.Fatalf("%d of the %d notifications recorded before the kill not delivered after 150 s: %s",
				len(undelivered()), len(pending), strings.Join(states, "; "))
		}
	}
	allDelivered := time.Now()
	wait.For(t, 60*time.Second, "every user's last notification equal to the query API's answer", func() bool {
		for user := range f.plan.users {
			status, body := f.get(ctx, "/v1/users/"+user+"/entitlement")
			var want notifyAnswer
			if status != http.StatusOK || json.Unmarshal(body, &want) != nil {
				return false
			}
			if got, ok := f.sink.last(user); !ok || !got.equal(want) {
				return false
			}
		}
		return true
	})
	t.Logf("%d notifications recorded before the kill and undelivered then, all delivered %s after the promotion",
		len(pending), allDelivered.Sub(promoted).Round(time.Millisecond))
	f.reads.stop()
	require.NoError(t, f.st.Stop(), "every service stops cleanly on SIGTERM after the failover")
}

// lostEvents are the events answered 200 that the database (the promoted one) does not hold.
func (f *failoverEnv) lostEvents(ctx context.Context, t *testing.T) []string {
	t.Helper()
	rows, err := f.db.Query(ctx, `SELECT id FROM stripe_events`)
	if err != nil {
		return []string{"(query failed: " + err.Error() + ")"}
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return []string{"(query failed: " + err.Error() + ")"}
	}
	stored := map[string]bool{}
	for _, id := range ids {
		stored[id] = true
	}
	var lost []string
	for id := range f.plan.events {
		if f.traffic.accepted[id] && !stored[id] {
			lost = append(lost, id)
		}
	}
	return lost
}

// countEvents is the number of stored events in the database at url.
func countEvents(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM stripe_events`).Scan(&n)
	return n, err
}

// reads asks query APIs for users' answers all along, as the app does, and records each answer.
type reads struct {
	mu     sync.Mutex
	got    []read
	cancel context.CancelFunc
	done   chan struct{}
}

type read struct {
	base   string
	at     time.Time
	status int
}

// startReads asks each of bases for a random user's answer every 50 ms until stop (t.Cleanup).
func startReads(t *testing.T, e *crashEnv, bases []string) *reads {
	ctx, cancel := context.WithCancel(context.Background())
	r := &reads{cancel: cancel, done: make(chan struct{})}
	users := make([]string, 0, len(e.plan.users))
	for u := range e.plan.users {
		users = append(users, u)
	}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, base := range bases {
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				status, _ := e.getAt(rctx, base, "/v1/users/"+users[rand.IntN(len(users))]+"/entitlement?livemode=false")
				rcancel()
				r.mu.Lock()
				r.got = append(r.got, read{base: base, at: time.Now(), status: status})
				r.mu.Unlock()
			}
		}
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *reads) stop() {
	r.cancel()
	<-r.done
}

// during summarises the answers between from and to, per query API.
func (r *reads) during(from, to time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	type tally struct{ ok, notFound, unavailable, other int }
	by := map[string]*tally{}
	var order []string
	for _, g := range r.got {
		if g.at.Before(from) || g.at.After(to) {
			continue
		}
		tl := by[g.base]
		if tl == nil {
			tl = &tally{}
			by[g.base] = tl
			order = append(order, g.base)
		}
		switch g.status {
		case http.StatusOK:
			tl.ok++
		case http.StatusNotFound:
			tl.notFound++
		case http.StatusServiceUnavailable:
			tl.unavailable++
		default:
			tl.other++
		}
	}
	s := ""
	for _, b := range order {
		tl := by[b]
		s += fmt.Sprintf("[%s: %d answers 200, %d 404 (user not applied yet), %d 503, %d other or none] ", b, tl.ok, tl.notFound, tl.unavailable, tl.other)
	}
	return s
}

// failedAfter counts the answers of base after since that were neither 200 nor 404.
func (r *reads) failedAfter(base string, since time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, g := range r.got {
		if g.base == base && g.at.After(since) && g.status != http.StatusOK && g.status != http.StatusNotFound {
			n++
		}
	}
	return n
}
