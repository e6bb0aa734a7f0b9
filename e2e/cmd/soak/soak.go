package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/e2e/load"
	"github.com/tollgate/tollgate/e2e/rig"
	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/e2e/stack"
)

const (
	batchCustomers = 50   // customers whose events are shuffled together
	dupChance      = 0.15 // an event is sent twice, the second time later in its batch
	oldChance      = 0.02 // after an event, one sent long ago is sent again (past the batch)
	senders        = 16
	readers        = 8
)

// soak is one run.
type soak struct {
	settings
	log      io.Writer
	progress io.Writer

	mu       sync.Mutex
	accepted map[string]int    // event ids answered 200 → how many of their answers said duplicate:false
	expect   map[string]expect // user id → the answer its events lead to
	users    []string          // users whose events were all sent
	errs     []error

	sent, dups, dupAnswers, checks, notFound atomic.Int64
}

// expect is the part of an answer the soak checks.
type expect struct {
	Premium bool   `json:"premium"`
	Status  string `json:"status"`
}

func (s *soak) say(format string, args ...any) {
	fmt.Fprintf(s.progress, "soak: "+format+"\n", args...)
}

func (s *soak) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 20 {
		s.say("ERROR %v", err)
	}
	s.errs = append(s.errs, err)
}

func (s *soak) run(ctx context.Context) (string, error) {
	tmp, err := os.MkdirTemp("", "tollgate-soak-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	s.say("starting nats-server (sync_interval: always), a fresh database and bin/ services")
	r, err := rig.Start(ctx, rig.Options{BinDir: s.binDir, WorkDir: tmp, DatabaseURL: s.dbURL,
		DBPrefix: "tollgate_soak_", SyncAlways: true, Log: s.log})
	if err != nil {
		return "", fmt.Errorf("start: %w", err)
	}
	defer func() {
		if err := r.Close(); err != nil {
			s.say("stop: %v", err)
		}
	}()
	s.accepted, s.expect = map[string]int{}, map[string]expect{}
	mc := load.NewClient(1)
	defer mc.CloseIdleConnections()

	idle := s.sample(ctx, mc, r, "start, idle")
	began := time.Now()
	s.say("steady load for %s: %d webhooks/s (%.0f%% sent twice, %.0f%% of old ones again, batches of %d customers shuffled), %d checks/s",
		s.duration, s.rate, dupChance*100, oldChance*100, batchCustomers, s.reads)

	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.write(loadCtx, r.Stack) })
	if s.reads > 0 {
		wg.Go(func() { s.read(loadCtx, r.Stack) })
	}
	warmAt := min(max(s.duration/10, 10*time.Second), s.duration/2)
	var warm, mid []sampleSet
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	warmTimer := time.After(warmAt)
	end := time.After(s.duration)
loop:
	for {
		select {
		case <-warmTimer:
			warm = s.sample(ctx, mc, r, "under load, warm")
		case <-tick.C:
			mid = s.sample(ctx, mc, r, "under load")
		case <-end:
			break loop
		case <-ctx.Done():
			stopLoad()
			wg.Wait()
			return "", ctx.Err()
		}
	}
	last := s.sample(ctx, mc, r, "end of load")
	stopLoad()
	wg.Wait()
	loadFor := time.Since(began)
	_ = mid

	s.verify(ctx, r)
	// Idle again: the load's connections are closed, the services have nothing to do.
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
	}
	final := s.sample(ctx, mc, r, "end, idle")

	report := s.report(r, loadFor, idle, warm, last, final)
	s.mu.Lock()
	defer s.mu.Unlock()
	return report, errors.Join(s.errs...)
}

// write sends the events of batch after batch of customers at the set rate until ctx is done,
// then finishes the batch it is in, so that every customer's events were all sent.
func (s *soak) write(ctx context.Context, st *stack.Stack) {
	prefix := "soak" + randomHex(3) + "_"
	conns := load.NewConns(strings.TrimPrefix(st.URL(stack.Listener), "http://"), senders)
	defer conns.Close()
	queue := make(chan scenario.Event, senders)
	var wg sync.WaitGroup
	for w := range senders {
		wg.Go(func() {
			for ev := range queue {
				s.send(conns, w, st.WebhookSecret, ev)
			}
		})
	}
	interval := time.Second / time.Duration(s.rate)
	next := time.Now()
	pace := func(ev scenario.Event) {
		// Sleep to the event's slot; behind schedule, send at once (the achieved rate is reported).
		if d := time.Until(next); d > 0 {
			<-time.After(d) // not cut short by ctx: the batch in progress is finished
		}
		next = next.Add(interval)
		queue <- ev
	}
	var old []scenario.Event // a ring of events sent before, to resend as late retries
	for n := 0; ctx.Err() == nil; n += batchCustomers {
		var batch []scenario.Event
		want := map[string]expect{}
		var users []string
		start := time.Now().Add(-time.Duration(mrand.IntN(3600)) * time.Second)
		for i := n; i < n+batchCustomers; i++ {
			c := scenario.NewCustomer(prefix, i)
			steps := c.Lifecycle(start.Add(time.Duration(i-n) * 10 * time.Second))[:2+i%5]
			for _, st := range steps {
				batch = append(batch, st.Event)
				if mrand.Float64() < dupChance {
					batch = append(batch, st.Event)
				}
			}
			last := steps[len(steps)-1]
			want[c.UserID] = expect{Premium: last.WantPremium, Status: last.WantStatus}
			users = append(users, c.UserID)
		}
		mrand.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		for _, ev := range batch {
			pace(ev)
			if len(old) > 0 && mrand.Float64() < oldChance {
				pace(old[mrand.IntN(len(old))])
			}
		}
		for _, ev := range batch {
			if len(old) < 5000 {
				old = append(old, ev)
			} else {
				old[mrand.IntN(len(old))] = ev
			}
		}
		s.mu.Lock()
		for u, e := range want {
			s.expect[u] = e
		}
		s.users = append(s.users, users...)
		s.mu.Unlock()
	}
	close(queue)
	wg.Wait()
}

// send posts one event, signed now (a retry carries a new signature, as Stripe's do), and
// records the answer.
func (s *soak) send(conns load.Conns, w int, secret string, ev scenario.Event) {
	wh := load.Sign([]scenario.Event{ev}, secret)[0]
	s.sent.Add(1)
	a, err := conns.PostWebhook(w, "/webhooks/stripe", wh)
	if err := load.Want200(a, err); err != nil {
		s.fail(fmt.Errorf("webhook %s: %w", ev.ID, err))
		return
	}
	// Copies of one event may be in flight at once, so which of them JetStream stores first is
	// open; verify checks that exactly one answer of each event said duplicate:false.
	dup := bytes.Contains(a.Body, []byte(`"duplicate":true`))
	s.mu.Lock()
	n, again := s.accepted[ev.ID]
	if !dup {
		n++
	}
	s.accepted[ev.ID] = n
	s.mu.Unlock()
	if again {
		s.dups.Add(1)
	}
	if dup {
		s.dupAnswers.Add(1)
	}
}

// read checks entitlements of users whose events were all sent, at the set rate. 200 and 404
// (not projected yet) are fine; anything else is an error.
func (s *soak) read(ctx context.Context, st *stack.Stack) {
	conns := load.NewConns(strings.TrimPrefix(st.URL(stack.QueryAPI), "http://"), readers)
	defer conns.Close()
	interval := time.Second * readers / time.Duration(s.reads)
	var wg sync.WaitGroup
	for w := range readers {
		wg.Go(func() {
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				s.mu.Lock()
				n := len(s.users)
				u := ""
				if n > 0 {
					u = s.users[mrand.IntN(n)]
				}
				s.mu.Unlock()
				if u == "" {
					continue
				}
				a, err := conns.Get(w, "/v1/users/"+u+"/entitlement", st.Token)
				s.checks.Add(1)
				switch {
				case err != nil:
					s.fail(fmt.Errorf("check %s: %w", u, err))
				case a.Status == http.StatusNotFound:
					s.notFound.Add(1)
				case a.Status != http.StatusOK:
					s.fail(fmt.Errorf("check %s: status %d: %.200s", u, a.Status, a.Body))
				}
			}
		})
	}
	wg.Wait()
}

// verify waits until every accepted event is in the event store, then checks every user's
// answer through the query API and the processor's error counters through its /metrics.
func (s *soak) verify(ctx context.Context, r *rig.Rig) {
	s.mu.Lock()
	ids := make([]string, 0, len(s.accepted))
	for id, fresh := range s.accepted {
		ids = append(ids, id)
		if fresh != 1 {
			s.errs = append(s.errs, fmt.Errorf("verify: event %s was answered duplicate:false %d times, want once", id, fresh))
		}
	}
	expects := make(map[string]expect, len(s.expect))
	for u, e := range s.expect {
		expects[u] = e
	}
	s.mu.Unlock()
	s.say("load over; waiting for %d accepted events to be stored", len(ids))

	conn, err := pgx.Connect(ctx, r.DatabaseURL)
	if err != nil {
		s.fail(fmt.Errorf("verify: %w", err))
		return
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(2 * time.Minute)
	var stored int
	for {
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM stripe_events WHERE id = ANY($1)", ids).Scan(&stored); err != nil {
			s.fail(fmt.Errorf("verify: count stored events: %w", err))
			return
		}
		if stored == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			s.fail(fmt.Errorf("verify: %d of %d accepted events stored after 2 minutes", stored, len(ids)))
			break
		}
		<-time.After(200 * time.Millisecond)
	}
	var total int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM stripe_events").Scan(&total); err == nil && total != len(ids) {
		s.fail(fmt.Errorf("verify: event store holds %d events, %d were accepted", total, len(ids)))
	}

	// The read model commits with the events; allow the query API's cache a moment to follow.
	users := make([]string, 0, len(expects))
	for u := range expects {
		users = append(users, u)
	}
	conns := load.NewConns(strings.TrimPrefix(r.Stack.URL(stack.QueryAPI), "http://"), readers)
	defer conns.Close()
	var wrong atomic.Int64
	res, _ := load.Run(ctx, load.Config{Workers: readers, Requests: len(users)}, func(_ context.Context, w, i int) error {
		u, want := users[i], expects[users[i]]
		var got expect
		for attempt := 0; ; attempt++ {
			a, err := conns.Get(w, "/v1/users/"+u+"/entitlement", r.Stack.Token)
			if err == nil && a.Status == http.StatusOK {
				if err := json.Unmarshal(a.Body, &got); err != nil {
					return fmt.Errorf("user %s: %w", u, err)
				}
				if got == want {
					return nil
				}
			}
			if attempt == 20 {
				wrong.Add(1)
				return fmt.Errorf("user %s: answer %+v (status %d, %w), want %+v", u, got, a.Status, err, want)
			}
			<-time.After(50 * time.Millisecond)
		}
	})
	if res.Errors > 0 {
		s.fail(fmt.Errorf("verify: %d of %d users answered wrong, first: %w", res.Errors, len(users), res.FirstErr))
	}
	s.say("verified: %d/%d accepted events stored once, %d users' answers checked, %d wrong", stored, len(ids), len(users), wrong.Load())

	m, err := rig.Scrape(ctx, load.NewClient(1), r.Stack.URL(stack.Processor))
	if err != nil {
		s.fail(err)
		return
	}
	if v := m.Sum("tollgate_processor_messages_total", `outcome="dead_letter"`) + m.Sum("tollgate_processor_dead_letters"); v > 0 {
		s.fail(fmt.Errorf("verify: processor dead-lettered events (%.0f)", v))
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
