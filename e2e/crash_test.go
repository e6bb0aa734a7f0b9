package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/wait"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/natsproc"
	"github.com/tollgate/tollgate/e2e/pgcluster"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/stream"
)

const (
	// crashCustomers is the number of customers of each crash test's traffic (about 7 events
	// each, about 1.4 copies of each event).
	crashCustomers = 40
	// crashSendEvery paces the traffic: about 50 webhooks a second, so it flows for 8 to 9
	// seconds, through the fault and well after it.
	crashSendEvery = 20 * time.Millisecond
	// processorDurable is the processor's durable consumer (shared by all its instances).
	processorDurable = "tollgate-processor"
)

// TestCrash runs Tollgate's real binaries under steady webhook traffic (shuffled, with
// duplicates, retried like Stripe retries) and crashes one part per subtest: the processor in the
// middle of a batch, nats-server (kill -9, restarted on the same store), the listener with
// requests in flight, and Postgres (a private cluster, stopped as a crash would and started
// again). Each subtest has its own nats-server, Postgres and services, and checks when the stack
// has drained:
//
//   - every event that got a 200 is stored exactly once in stripe_events, nothing is stored
//     that was not sent, and the stream stored one message per event;
//   - no event got two 200s saying "duplicate": false (JetStream lost an acknowledged message
//     and a later copy stored it again);
//   - every user's and customer's answer from the query API equals what pkg/subscription
//     derives from the customer's full history;
//   - dead_letters is empty (all traffic is valid).
//
// It is not parallel with the other top-level tests: on a 2-core machine it wants the CPU.
// TOLLGATE_CRASH_SEED replays a run's traffic plan (each subtest logs its seed).
func TestCrash(t *testing.T) {
	binDir, natsBin := buildBinaries(t)

	faults := []struct {
		name   string
		prefix string
		inject func(t *testing.T, e *crashEnv) (after func())
	}{
		{"processor_killed_mid_batch", "cp", killProcessorMidBatch},
		{"nats_killed", "cn", killNATS},
		{"listener_killed_in_flight", "cl", killListenerInFlight},
		{"postgres_stopped", "cg", stopPostgres},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			e := setupCrash(t, binDir, natsBin, f.prefix)
			started := time.Now()
			e.traffic.start(t)
			wait.For(t, 60*time.Second, "a third of the events accepted before the fault", func() bool {
				return e.traffic.acceptedEvents() >= len(e.plan.events)/3
			})
			after := f.inject(t, e)
			e.traffic.wait(t, sendDeadline+30*time.Second)
			t.Logf("traffic done after %s: %s", time.Since(started).Round(time.Millisecond), e.traffic.summary())
			drained := time.Now()
			e.waitDrained(t, 120*time.Second)
			t.Logf("drained %s after the traffic ended", time.Since(drained).Round(time.Millisecond))
			e.checkInvariants(t)
			if after != nil {
				after()
			}
			require.NoError(t, e.st.Stop(), "every service stops cleanly on SIGTERM after the crash")
		})
	}
}

// buildBinaries builds the three services and nats-server into a temporary directory and returns
// it and the nats-server binary's path.
func buildBinaries(t *testing.T) (binDir, natsBin string) {
	t.Helper()
	root := repoRoot(t)
	binDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", binDir+"/", "./listener", "./processor", "./queryapi")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build the services:\n%s", out)
	natsBin, err = natsproc.Build(ctx, filepath.Join(root, "e2e"), binDir)
	require.NoError(t, err)
	return binDir, natsBin
}

// crashEnv is one crash test's stack and what the test observes it with.
type crashEnv struct {
	pg      *pgcluster.Cluster
	nats    *natsproc.Server
	st      *stack.Stack
	db      *pgxpool.Pool
	js      jetstream.JetStream
	plan    *crashPlan
	traffic *traffic
	http    *http.Client
	// queryAPIs are the query API instances whose answers are checked; nil means the stack's one.
	queryAPIs []string
	// natsRestarted is when killNATS started nats-server again (zero in the other subtests).
	natsRestarted time.Time
}

// setupCrash starts a private Postgres, a nats-server process and the three services on free
// ports, and builds the traffic plan. Everything stops in t.Cleanup; on failure the services'
// logs are printed.
func setupCrash(t *testing.T, binDir, natsBin, prefix string) *crashEnv {
	t.Helper()
	seed := crashSeed(t)
	e := &crashEnv{http: &http.Client{Timeout: 10 * time.Second}}
	e.pg = pgcluster.Start(t)
	e.nats = natsproc.Start(t, natsBin)

	logf := servicesLog(t)
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	e.st, err = stack.Start(ctx, stack.Options{
		BinDir: binDir, DataDir: t.TempDir(), NATSURL: e.nats.URL(), DatabaseURL: e.pg.URL("tollgate"),
		ListenerAddr: addr(), QueryAPIAddr: addr(), ProcessorAddr: addr(), Log: logf,
	})
	require.NoError(t, err, "start the stack")
	t.Cleanup(func() { _ = e.st.Stop() }) // after a kill, whichever processes are left

	e.db, err = pgxpool.New(ctx, e.pg.URL("tollgate"))
	require.NoError(t, err)
	t.Cleanup(e.db.Close)
	nc, err := nats.Connect(e.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	e.js, err = jetstream.New(nc)
	require.NoError(t, err)

	e.plan = newCrashPlan(rand.New(rand.NewPCG(seed, seed>>1)), prefix, crashCustomers)
	e.traffic = newTraffic([]string{e.st.URL(stack.Listener) + "/webhooks/stripe"}, e.st.WebhookSecret, e.plan, crashSendEvery)
	return e
}

// servicesLog is a file for the services' logs; t.Cleanup prints its end when the test failed.
func servicesLog(t *testing.T) *os.File {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "services.log")
	logf, err := os.Create(logPath)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = logf.Close()
		if t.Failed() {
			t.Logf("last lines of the services' logs:\n%s", tailLines(logPath, 150))
		}
	})
	return logf
}

// crashSeed is the seed of a traffic plan: TOLLGATE_CRASH_SEED, else the clock. It is logged.
func crashSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TOLLGATE_CRASH_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "TOLLGATE_CRASH_SEED")
	}
	t.Logf("traffic plan seed %d", seed)
	return seed
}

// killProcessorMidBatch holds an exclusive lock on the read model so that the processor's batch
// transactions stop halfway (events inserted, not committed, waiting to lock the read model),
// and kills the processor there with SIGKILL twice: first in a small batch of the steady traffic,
// then, started again once a backlog built up, in the large batch it fetches at start. Then it
// releases the lock and starts the processor for good. The killed batches' messages are
// delivered and unacknowledged; JetStream redelivers them after the processor's ack wait (30 s).
func killProcessorMidBatch(t *testing.T, e *crashEnv) func() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.pg.URL("tollgate"))
	require.NoError(t, err)
	defer func() { _ = conn.Close(ctx) }()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	// EXCLUSIVE blocks SELECT ... FOR UPDATE and writes, not the query API's reads.
	_, err = tx.Exec(ctx, `LOCK TABLE customer_entitlements IN EXCLUSIVE MODE`)
	require.NoError(t, err)

	// waiting lists the backends waiting for a lock: the processors' blocked transactions (a
	// killed processor's stays until the lock is released).
	waiting := func() []int32 {
		rows, err := e.db.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND pid <> $1`, conn.PgConn().PID())
		if err != nil {
			return nil
		}
		pids, _ := pgx.CollectRows(rows, pgx.RowTo[int32])
		return pids
	}
	// killBlocked waits until a transaction other than those of old waits on the lock, then
	// kills the processor and reports how many messages it had delivered and unacknowledged.
	killBlocked := func(old []int32) int {
		t.Helper()
		wait.For(t, 15*time.Second, "a processor transaction waiting on the read model", func() bool {
			return slices.ContainsFunc(waiting(), func(pid int32) bool { return !slices.Contains(old, pid) })
		})
		info, err := e.consumerInfo(ctx)
		require.NoError(t, err)
		e.st.Process(stack.Processor).Kill()
		return info.NumAckPending
	}
	stored := e.storedCount(t)
	first := killBlocked(nil)
	orphans := waiting()
	backlogFrom := e.traffic.acceptedEvents()
	wait.For(t, 30*time.Second, "a backlog of 50 events", func() bool { return e.traffic.acceptedEvents() >= backlogFrom+50 })
	_, err = e.st.Process(stack.Processor).Restart(ctx)
	require.NoError(t, err)
	second := killBlocked(orphans)
	require.NoError(t, tx.Rollback(ctx)) // the dead processors' transactions roll back
	start := time.Now()
	p, err := e.st.Process(stack.Processor).Restart(ctx)
	require.NoError(t, err)
	require.NoError(t, p.WaitReady(ctx, 60*time.Second))
	t.Logf("processor killed mid-batch twice: %d messages delivered and unacknowledged at the first kill, %d at the second "+
		"(the backlog); %d events committed before; ready again in %s", first, second, stored, time.Since(start).Round(time.Millisecond))
	require.Positive(t, first, "the processor had a batch in flight at the first kill")
	require.GreaterOrEqual(t, second, 50, "the second kill caught the backlog batch")
	return nil
}

// killNATS kills nats-server with SIGKILL while webhooks flow, waits until the listener has
// refused some with 503, and starts the server again on the same store and port.
func killNATS(t *testing.T, e *crashEnv) func() {
	ctx := context.Background()
	tr := e.traffic
	e.nats.Kill()
	killed := time.Now() // the server is gone: nothing started from now on can be acknowledged
	wait.For(t, 30*time.Second, "the listener answering 503 while NATS is down", func() bool {
		return tr.count(func(a attempt) bool { return a.start.After(killed) && a.status == http.StatusServiceUnavailable }) >= 10
	})
	restarting := time.Now()
	require.NoError(t, e.nats.Restart(ctx))
	restarted := time.Now()
	e.natsRestarted = restarting
	wait.For(t, 60*time.Second, "a webhook accepted after NATS restarted", func() bool {
		return tr.count(func(a attempt) bool { return a.start.After(restarted) && a.status == http.StatusOK }) > 0
	})
	down := func(a attempt) bool { return a.end.After(killed) && a.start.Before(restarted) }
	t.Logf("nats-server killed: down %s, %d webhooks answered 503 and %d without answer meanwhile; first 200 %s after the restart",
		restarted.Sub(killed).Round(time.Millisecond),
		tr.count(func(a attempt) bool { return down(a) && a.status == http.StatusServiceUnavailable }),
		tr.count(func(a attempt) bool { return down(a) && a.status == 0 }),
		firstOK(tr, restarted).Sub(restarted).Round(time.Millisecond))
	require.Zero(t, tr.count(func(a attempt) bool {
		return a.start.After(killed) && a.end.Before(restarting) && a.status == http.StatusOK
	}), "no webhook may get a 200 while NATS is down")
	return nil
}

// killListenerInFlight freezes nats-server (SIGSTOP) so that webhooks wait inside the listener
// for their PubAck, kills the listener with SIGKILL while they do, thaws NATS and starts the
// listener again. The events of those requests may or may not have reached the stream; Stripe
// (the traffic) retries them either way.
func killListenerInFlight(t *testing.T, e *crashEnv) func() {
	ctx := context.Background()
	tr := e.traffic
	require.NoError(t, e.nats.Freeze())
	thawed := false
	defer func() {
		if !thawed {
			e.nats.Thaw()
		}
	}()
	wait.For(t, 20*time.Second, "webhook requests in flight in the listener", func() bool { return tr.inFlight.Load() >= 3 })
	inFlight := tr.inFlight.Load()
	p := e.st.Process(stack.Listener)
	killed := time.Now()
	p.Kill()
	e.nats.Thaw()
	thawed = true
	wait.For(t, 20*time.Second, "a webhook refused while the listener is down", func() bool {
		return tr.count(func(a attempt) bool { return a.start.After(killed) && a.err != nil }) > 0
	})
	p, err := p.Restart(ctx)
	require.NoError(t, err)
	require.NoError(t, p.WaitReady(ctx, 60*time.Second))
	restarted := time.Now()

	lost := map[string]bool{} // events whose answer the kill took
	for _, a := range tr.snapshot() {
		if a.written && a.status == 0 && a.start.Before(killed) && !a.end.Before(killed) {
			lost[a.id] = true
		}
	}
	t.Logf("listener killed with %d requests in flight: %d answers lost, listener back in %s",
		inFlight, len(lost), restarted.Sub(killed).Round(time.Millisecond))
	require.NotEmpty(t, lost, "requests were in flight when the listener was killed")
	return func() { // once the traffic is over: did JetStream store those events without a 200?
		first := map[string]attempt{} // each lost event's first 200
		for _, a := range tr.snapshot() {
			if f, ok := first[a.id]; lost[a.id] && a.status == http.StatusOK && (!ok || a.end.Before(f.end)) {
				first[a.id] = a
			}
		}
		storedAnyway, before := 0, 0
		for _, a := range first {
			switch {
			case a.end.Before(killed):
				before++ // another copy had been accepted already
			case a.duplicate:
				storedAnyway++
			}
		}
		t.Logf("of the %d events whose answer the kill took, %d had been accepted before through another copy, "+
			"%d were stored without a 200 (their retry said duplicate), %d were not stored until retried",
			len(lost), before, storedAnyway, len(lost)-before-storedAnyway)
	}
}

// stopPostgres stops the private Postgres as a crash would (immediate shutdown) while webhooks
// flow, keeps it down until the processor reports it and the listener (which needs no Postgres)
// has accepted more webhooks, then starts it again on the same data and port.
func stopPostgres(t *testing.T, e *crashEnv) func() {
	ctx := context.Background()
	tr := e.traffic
	e.pg.Stop()
	stopped := time.Now()
	wait.For(t, 30*time.Second, "processor not ready and webhooks still accepted while Postgres is down", func() bool {
		return e.ready(ctx, stack.Processor) != http.StatusOK &&
			tr.count(func(a attempt) bool { return a.start.After(stopped) && a.status == http.StatusOK }) >= 100
	})
	var user string
	for u := range e.plan.users {
		user = u
		break
	}
	queryStatus, _ := e.get(ctx, "/v1/users/"+user+"/entitlement")
	require.NoError(t, e.pg.Restart(ctx))
	restarted := time.Now()
	wait.For(t, 60*time.Second, "processor and query API ready after Postgres restarted", func() bool {
		return e.ready(ctx, stack.Processor) == http.StatusOK && e.ready(ctx, stack.QueryAPI) == http.StatusOK
	})
	t.Logf("postgres stopped for %s: %d webhooks accepted meanwhile; query API answered %d during the outage; "+
		"processor and query API ready %s after the restart",
		restarted.Sub(stopped).Round(time.Millisecond),
		tr.count(func(a attempt) bool {
			return a.start.After(stopped) && a.end.Before(restarted) && a.status == http.StatusOK
		}),
		queryStatus, time.Since(restarted).Round(time.Millisecond))
	require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, queryStatus,
		"the query API answers from its cache or 503 (retry) while Postgres is down, never a 500")
	return nil
}

// waitDrained waits until the processor has stored every event, JetStream has nothing left to
// deliver, and the query API's answers match the derivations.
func (e *crashEnv) waitDrained(t *testing.T, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	want, err := e.plan.expected()
	require.NoError(t, err)
	var last string
	deadline := time.Now().Add(timeout)
	for {
		last = ""
		if n := e.storedCount(t); n != len(e.plan.events) {
			last = fmt.Sprintf("%d of %d events stored", n, len(e.plan.events))
		} else if info, err := e.consumerInfo(ctx); err != nil {
			last = "consumer info: " + err.Error()
		} else if info.NumPending > 0 || info.NumAckPending > 0 {
			last = fmt.Sprintf("consumer has %d pending and %d unacknowledged", info.NumPending, info.NumAckPending)
		} else if err := e.answersMatch(ctx, want); err != nil {
			last = err.Error()
		}
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained after %s: %s", timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkInvariants asserts what must hold once the stack has drained after the fault.
func (e *crashEnv) checkInvariants(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	attempts := e.traffic.snapshot()

	// Every copy was eventually accepted: after the fault everything works again.
	for id := range e.plan.events {
		require.True(t, e.traffic.accepted[id], "event %s was never answered 200", id)
	}

	// Every 200 is stored, once; nothing is stored that was not sent.
	rows, err := e.db.Query(ctx, `SELECT id, count(*) FROM stripe_events GROUP BY id`)
	require.NoError(t, err)
	stored := map[string]int{}
	var id string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error { stored[id] = n; return nil })
	require.NoError(t, err)
	for id, n := range stored {
		require.Contains(t, e.plan.events, id, "stored event %s was never sent", id)
		require.Equal(t, 1, n, "event %s stored %d times", id, n)
	}
	newAnswers := map[string][]attempt{}
	for _, a := range attempts {
		if a.status != http.StatusOK {
			continue
		}
		require.Contains(t, stored, a.id, "event %s got a 200 at %s but is not stored", a.id, a.end.Format(time.StampMilli))
		if !a.duplicate {
			newAnswers[a.id] = append(newAnswers[a.id], a)
		}
	}
	// The processor purges applied events from the stream, and a restarted nats-server
	// rebuilds its dedupe window from the messages it still holds. So a copy of an event
	// applied before the restart, sent again after it, is stored again (duplicate:false) and
	// deduped by the event store (checked above: stored once). Any other second
	// duplicate:false means JetStream stored an event twice or lost an acknowledged copy.
	requeued := 0
	for id, as := range newAnswers {
		slices.SortFunc(as, func(a, b attempt) int { return a.start.Compare(b.start) })
		if len(as) == 2 && !e.natsRestarted.IsZero() && as[0].end.Before(e.natsRestarted) && as[1].start.After(e.natsRestarted) {
			requeued++
			continue
		}
		require.Len(t, as, 1, "event %s got %d 200s with duplicate:false: JetStream stored it more than once, "+
			"or lost an acknowledged copy", id, len(as))
	}
	if requeued > 0 {
		t.Logf("%d events applied before the nats-server restart were sent again after it and stored again (applied once)", requeued)
	}

	// JetStream stored one message per event (its last sequence: what was ever stored), and
	// whatever the stream still holds is applied: the processor purges applied events once
	// they are older than its retention window (STREAM_RETAIN_APPLIED), never an unapplied one.
	s, err := e.js.Stream(ctx, stream.Name)
	require.NoError(t, err)
	var info *jetstream.StreamInfo
	wait.For(t, 10*time.Second, "every message left in the stream applied", func() bool {
		info, err = s.Info(ctx)
		if err != nil {
			return false
		}
		ci, err := e.consumerInfo(ctx)
		return err == nil && (info.State.Msgs == 0 || ci.AckFloor.Stream >= info.State.LastSeq)
	})
	require.Equal(t, uint64(len(e.plan.events)+requeued), info.State.LastSeq, "messages stored in stream %s", stream.Name)

	// Every answer is the derivation of the full history.
	want, err := e.plan.expected()
	require.NoError(t, err)
	require.NoError(t, e.answersMatch(ctx, want))

	// Nothing dead-lettered: all traffic is valid.
	var dead int
	var reasons []string
	require.NoError(t, e.db.QueryRow(ctx, `SELECT count(*), coalesce(array_agg(coalesce(event_id, '?') || ': ' || reason), '{}')
		FROM dead_letters`).Scan(&dead, &reasons))
	require.Zero(t, dead, "dead letters: %s", strings.Join(reasons, "; "))
}

// answersMatch compares every query API instance's answer for every customer and user with the
// expected rows; it returns the first difference.
func (e *crashEnv) answersMatch(ctx context.Context, want map[string]entitlement.Customer) error {
	bases := e.queryAPIs
	if bases == nil {
		bases = []string{e.st.URL(stack.QueryAPI)}
	}
	for _, base := range bases {
		if err := e.answersMatchAt(ctx, base, want); err != nil {
			return err
		}
	}
	return nil
}

// answersMatchAt is answersMatch for the query API at base.
func (e *crashEnv) answersMatchAt(ctx context.Context, base string, want map[string]entitlement.Customer) error {
	for _, cid := range slices.Sorted(maps.Keys(want)) {
		if err := e.compare(ctx, base, "/v1/customers/"+cid+"/entitlement"+inScope(want[cid].Scope), customerView(want[cid])); err != nil {
			return err
		}
	}
	for user, cids := range e.plan.users {
		rows := make([]entitlement.Customer, 0, len(cids))
		for _, cid := range cids {
			if got := want[cid].UserID; got != user {
				return fmt.Errorf("customer %s derives user %q, the plan says %q", cid, got, user)
			}
			rows = append(rows, want[cid])
		}
		u := entitlement.Merge(rows)
		u.UserID = user
		if err := e.compare(ctx, base, "/v1/users/"+user+"/entitlement"+inScope(u.Scope), userView(u)); err != nil {
			return err
		}
	}
	return nil
}

// compare GETs path from the query API at base and compares the answer, updated_at aside, with want.
func (e *crashEnv) compare(ctx context.Context, base, path string, want answerView) error {
	status, body := e.getAt(ctx, base, path)
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, status, body)
	}
	var got answerView
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("GET %s: %w: %s", path, err, body)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		return fmt.Errorf("GET %s\n got: %s\nwant: %s", path, g, w)
	}
	return nil
}

// get is a GET of the query API with the stack's token; status 0 when it did not answer.
func (e *crashEnv) get(ctx context.Context, path string) (int, []byte) {
	return e.getAt(ctx, e.st.URL(stack.QueryAPI), path)
}

// getAt is get from the query API at base.
func (e *crashEnv) getAt(ctx context.Context, base, path string) (int, []byte) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return 0, []byte(err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+e.st.Token)
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// ready is the status of a service's /readyz, 0 when it did not answer.
func (e *crashEnv) ready(ctx context.Context, service string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.st.URL(service)+"/readyz", nil)
	if err != nil {
		return 0
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func (e *crashEnv) consumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, stream.Name, processorDurable)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// storedCount is the number of rows in stripe_events, -1 when Postgres does not answer.
func (e *crashEnv) storedCount(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM stripe_events`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// firstOK is the end of the first 200 of an attempt started after since (zero when none).
func firstOK(tr *traffic, since time.Time) time.Time {
	var first time.Time
	for _, a := range tr.snapshot() {
		if a.status == http.StatusOK && a.start.After(since) && (first.IsZero() || a.end.Before(first)) {
			first = a.end
		}
	}
	return first
}

// tailLines is the last n lines of the file at path.
func tailLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		lines = append(lines, "(read: "+err.Error()+")")
	}
	return strings.Join(lines, "\n")
}
