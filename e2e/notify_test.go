package e2e_test

import (
	"context"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/testkit/wait"
)

// notifyCustomers is the size of TestNotify's traffic plan (about 7 events each).
const notifyCustomers = 24

// TestNotify proves the change notifications through the real services (listener, processor, query API,
// nats-server, Postgres):
//
//   - a request holding ?wait_for=<event> started before the event is sent through the listener
//     answers as soon as the event is applied, well before its timeout;
//   - under shuffled, duplicated traffic with a kill -9 of the processor in the middle, every
//     user's last notification (highest sequence) at a sink that checks every Standard Webhooks
//     signature and fails every third delivery equals the query API's final answer;
//   - every customer's admin timeline lists each stored event once, in order, and its last
//     `after` is the query API's answer for the customer.
func TestNotify(t *testing.T) {
	binDir, natsBin := buildBinaries(t)
	sink := newNotifySink(t)
	e := setupNotify(t, binDir, natsBin, sink)
	ctx := context.Background()

	// (3) Read your writes: the wait customer's first events are applied; a request waiting for
	// its activation is held before that event is sent.
	wc := scenario.NewCustomer("ntw", 0)
	at := time.Now().Add(-3 * time.Hour).Unix()
	waitEvs := []scenario.Event{
		wc.CustomerCreated(at), wc.CheckoutCompleted(at + 1),
		wc.SubscriptionEvent("customer.subscription.created", "incomplete", at+2, nil),
		wc.SubscriptionEvent("customer.subscription.updated", "active", at+3, map[string]any{"status": "incomplete"}),
	}
	for _, ev := range waitEvs {
		e.plan.events[ev.ID] = ev
		e.plan.customers[wc.ID] = append(e.plan.customers[wc.ID], ev.ID)
	}
	e.plan.users[wc.UserID] = []string{wc.ID}
	for _, ev := range waitEvs[:3] {
		e.traffic.deliver(ctx, ev.ID)
	}
	wait.For(t, 30*time.Second, "the wait customer's first events applied", func() bool {
		status, body := e.get(ctx, "/v1/users/"+wc.UserID+"/entitlement")
		return status == http.StatusOK && strings.Contains(string(body), `"status":"incomplete"`)
	})
	activation := waitEvs[3].ID
	type held struct {
		status  int
		header  string
		body    []byte
		elapsed time.Duration
		err     error
	}
	heldc := make(chan held, 1)
	started := make(chan time.Time, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			e.st.URL(stack.QueryAPI)+"/v1/users/"+wc.UserID+"/entitlement?wait_for="+activation+"&timeout=10s", nil)
		if err != nil {
			heldc <- held{err: err}
			return
		}
		req.Header.Set("Authorization", "Bearer "+e.st.Token)
		start := time.Now()
		started <- start
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			heldc <- held{err: err}
			return
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		heldc <- held{status: resp.StatusCode, header: resp.Header.Get("Tollgate-Wait"), body: b, elapsed: time.Since(start)}
	}()
	heldFrom := <-started
	time.Sleep(500 * time.Millisecond) // the request is held at the query API
	select {
	case h := <-heldc:
		t.Fatalf("the wait_for request answered before its event was sent: %d %s", h.status, h.body)
	default:
	}
	sent := time.Now()
	e.traffic.deliver(ctx, activation)
	accepted := time.Now()
	h := <-heldc
	require.NoError(t, h.err)
	answered := heldFrom.Add(h.elapsed)
	require.Equal(t, http.StatusOK, h.status, "%s", h.body)
	require.Empty(t, h.header, "Tollgate-Wait: the request timed out instead of seeing its event")
	require.Contains(t, string(h.body), `"status":"active"`)
	require.Less(t, h.elapsed, 5*time.Second, "held well under its 10 s timeout")
	t.Logf("wait_for %s: held %s in all; answered %s after the event was sent to the listener (%s after its 200)",
		activation, h.elapsed.Round(time.Millisecond), answered.Sub(sent).Round(time.Millisecond),
		answered.Sub(accepted).Round(time.Millisecond))

	// (2) Traffic with a kill -9 of the processor in the middle.
	trafficFrom := time.Now()
	e.traffic.start(t)
	wait.For(t, 60*time.Second, "half of the events accepted before the kill", func() bool {
		return e.traffic.acceptedEvents() >= len(e.plan.events)/2
	})
	e.st.Process(stack.Processor).Kill()
	t.Logf("processor killed (kill -9) after %d events accepted, %d notifications received",
		e.traffic.acceptedEvents(), sink.received())
	time.Sleep(500 * time.Millisecond)
	p, err := e.st.Process(stack.Processor).Restart(ctx)
	require.NoError(t, err)
	require.NoError(t, p.WaitReady(ctx, 60*time.Second))
	e.traffic.wait(t, sendDeadline+30*time.Second)
	t.Logf("traffic done after %s: %s", time.Since(trafficFrom).Round(time.Millisecond), e.traffic.summary())
	e.waitDrained(t, 60*time.Second)
	e.checkInvariants(t)

	// Every user's last notification is the query API's final answer.
	var last string
	defer func() {
		if t.Failed() && last != "" {
			t.Logf("last difference: %s", last)
		}
	}()
	wait.For(t, 75*time.Second, "every user's last notification equal to the query API's answer", func() bool {
		last = ""
		for user := range e.plan.users {
			status, body := e.get(ctx, "/v1/users/"+user+"/entitlement")
			if status != http.StatusOK {
				last = fmt.Sprintf("GET user %s: %d %s", user, status, body)
				return false
			}
			var want notifyAnswer
			require.NoError(t, json.Unmarshal(body, &want))
			got, ok := sink.last(user)
			if !ok || !got.equal(want) {
				last = fmt.Sprintf("user %s: last notification %+v (received %v), query API %+v", user, got, ok, want)
				return false
			}
		}
		return true
	})
	deliveries, failed, invalid := sink.counts()
	t.Logf("notifications: %d deliveries received, %d answered 500, %d invalid signatures, %d users, %d distinct webhook-ids",
		deliveries, failed, invalid, len(e.plan.users), sink.ids())
	require.Zero(t, invalid, "invalid signatures")
	require.Positive(t, failed, "the sink failed some deliveries")

	// (1) Every customer's timeline: each stored event once, in order; the last after is the answer.
	admin := &http.Client{Timeout: 10 * time.Second}
	for _, cid := range slices.Sorted(maps.Keys(e.plan.customers)) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.st.URL(stack.Processor)+"/admin/v1/customers/"+cid+"/timeline", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+e.st.AdminToken)
		resp, err := admin.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "timeline of %s: %s", cid, b)
		var tl struct {
			CustomerID string `json:"customer_id"`
			Events     []struct {
				ID      string       `json:"id"`
				Created time.Time    `json:"created"`
				After   notifyAnswer `json:"after"`
			} `json:"events"`
		}
		require.NoError(t, json.Unmarshal(b, &tl), "%s", b)
		require.Equal(t, cid, tl.CustomerID)
		var stored int
		require.NoError(t, e.db.QueryRow(ctx, `SELECT count(*) FROM stripe_events WHERE customer_id = $1`, cid).Scan(&stored))
		require.Len(t, tl.Events, stored, "timeline of %s: one entry per stored event", cid)
		seen := map[string]bool{}
		for i, ev := range tl.Events {
			require.False(t, seen[ev.ID], "timeline of %s lists %s twice", cid, ev.ID)
			seen[ev.ID] = true
			require.Contains(t, e.plan.customers[cid], ev.ID, "timeline of %s lists %s", cid, ev.ID)
			if i > 0 {
				require.False(t, ev.Created.Before(tl.Events[i-1].Created), "timeline of %s out of order at %s", cid, ev.ID)
			}
		}
		status, body := e.get(ctx, "/v1/customers/"+cid+"/entitlement")
		require.Equal(t, http.StatusOK, status, "%s", body)
		var want notifyAnswer
		require.NoError(t, json.Unmarshal(body, &want))
		got := tl.Events[len(tl.Events)-1].After
		require.True(t, got.equal(want) && got.UserID == want.UserID,
			"timeline of %s: last after %+v, the query API answers %+v", cid, got, want)
	}
	t.Logf("%d customers' timelines checked", len(e.plan.customers))
	require.NoError(t, e.st.Stop(), "every service stops cleanly on SIGTERM")
}

// notifyAnswer is the part of an answer the notifications and timelines are compared on.
type notifyAnswer struct {
	UserID   string   `json:"user_id"`
	Premium  bool     `json:"premium"`
	Status   string   `json:"status"`
	Features []string `json:"features"`
}

func (a notifyAnswer) equal(b notifyAnswer) bool {
	return a.Premium == b.Premium && a.Status == b.Status && slices.Equal(a.Features, b.Features)
}

// notifySink is the app's endpoint: it verifies each delivery's signature, answers every third
// 500, and keeps each user's notification of the highest sequence among those it accepted.
type notifySink struct {
	key      []byte
	secret   string // NOTIFY_SECRET
	srv      *httptest.Server
	mu       sync.Mutex
	n        int
	failed   int
	invalid  int
	webhooks map[string]bool
	latest   map[string]notifyDelivery // by user id
	held     bool                      // answer every delivery 503 (the app down)
	reliable bool                      // do not fail every third delivery
	ok       map[string]bool           // webhook-ids answered 2xx
}

type notifyDelivery struct {
	seq    int64
	answer notifyAnswer
}

func newNotifySink(t *testing.T) *notifySink {
	t.Helper()
	s := &notifySink{key: make([]byte, 32), webhooks: map[string]bool{}, latest: map[string]notifyDelivery{}, ok: map[string]bool{}}
	_, _ = crand.Read(s.key)
	s.secret = "whsec_" + base64.StdEncoding.EncodeToString(s.key)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *notifySink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	id, ts, sig := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	valid := err == nil && id != "" && ts != "" && slices.ContainsFunc(strings.Fields(sig), func(v string) bool {
		return hmac.Equal([]byte(v), []byte(want))
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if !valid {
		s.invalid++
		http.Error(w, "invalid signature", http.StatusBadRequest)
		return
	}
	s.webhooks[id] = true
	if s.held {
		http.Error(w, "the app is down", http.StatusServiceUnavailable)
		return
	}
	if !s.reliable && s.n%3 == 0 {
		s.failed++
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	var n struct {
		Type     string       `json:"type"`
		Sequence int64        `json:"sequence"`
		Data     notifyAnswer `json:"data"`
	}
	if err := json.Unmarshal(body, &n); err != nil || n.Type != "entitlement.updated" || n.Data.UserID == "" {
		s.invalid++
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if cur, ok := s.latest[n.Data.UserID]; !ok || n.Sequence > cur.seq {
		s.latest[n.Data.UserID] = notifyDelivery{seq: n.Sequence, answer: n.Data}
	}
	s.ok[id] = true
	w.WriteHeader(http.StatusNoContent)
}

// hold makes the sink answer every delivery 503 (true) or serve again (false).
func (s *notifySink) hold(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = on
}

// delivered reports whether the delivery with webhook-id id was answered 2xx.
func (s *notifySink) delivered(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok[id]
}

func (s *notifySink) last(user string) (notifyAnswer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.latest[user]
	return d.answer, ok
}

func (s *notifySink) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *notifySink) ids() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.webhooks)
}

func (s *notifySink) counts() (deliveries, failed, invalid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.failed, s.invalid
}

// setupNotify starts a nats-server process and the three services (the processor notifying the
// sink) on free ports, in a fresh database of the shared Postgres, and builds the traffic plan.
func setupNotify(t *testing.T, binDir, natsBin string, sink *notifySink) *crashEnv {
	t.Helper()
	seed := crashSeed(t)
	e := &crashEnv{http: &http.Client{Timeout: 10 * time.Second}}
	e.st, e.nats = startSharedStack(t, binDir, natsBin, "notify",
		map[string]string{"NOTIFY_URLS": sink.srv.URL + "/hooks", "NOTIFY_SECRET": sink.secret})
	dbURL := e.st.DatabaseURL
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	e.db, err = pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(e.db.Close)
	nc, err := nats.Connect(e.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	e.js, err = jetstream.New(nc)
	require.NoError(t, err)

	e.plan = newCrashPlan(rand.New(rand.NewPCG(seed, seed>>1)), "nt", notifyCustomers)
	e.traffic = newTraffic([]string{e.st.URL(stack.Listener) + "/webhooks/stripe"}, e.st.WebhookSecret, e.plan, crashSendEvery)
	return e
}
