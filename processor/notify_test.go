package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/notify"
	"github.com/tollgate/tollgate/processor/internal/pgpool"
	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/backoff"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/pkg/outbox"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/wait"
)

// sink is an app receiving notifications: it verifies each signature by the Standard Webhooks
// recipe (independently of outbox.Sign), fails every third delivery with a 500, and keeps per
// user the notification of the highest sequence, as the contract tells receivers to.
type sink struct {
	key      []byte
	mu       sync.Mutex
	n        int
	invalid  int
	latest   map[string]outbox.Body
	ids      map[string]string // webhook-id by user and sequence: stable across retries
	unstable int
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id + "." + ts + "." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	sec, err := strconv.ParseInt(ts, 10, 64)
	if r.Header.Get("webhook-signature") != want || err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		s.invalid++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if s.n%3 == 0 {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var b outbox.Body
	if err := json.Unmarshal(body, &b); err != nil || b.Type != "entitlement.updated" {
		s.invalid++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	key := *b.Data.UserID + "#" + strconv.FormatInt(b.Sequence, 10)
	if prev, ok := s.ids[key]; ok && prev != id {
		s.unstable++
	}
	s.ids[key] = id
	if old, ok := s.latest[*b.Data.UserID]; !ok || b.Sequence > old.Sequence {
		s.latest[*b.Data.UserID] = b
	}
	w.WriteHeader(http.StatusNoContent)
}

// startNotifying runs a consumer whose projector records notifications, and their delivery, as
// serve does, until the returned stop is called.
func bundleStartNotifying(b *processortest.Bundle, tb testing.TB, url string, key []byte) func() {
	tb.Helper()
	log := processortest.TestLogger(tb)
	conn, err := natsconn.Connect(b.Nats.URL(), "tollgate-processor", "test", log)
	require.NoError(tb, err)
	js, err := jetstream.New(conn.Conn)
	require.NoError(tb, err)
	pool, err := pgpool.Open(tb.Context(), b.DB.URL)
	require.NoError(tb, err)
	reg := prometheus.NewRegistry()
	m := projection.NewMetrics(reg)
	opts := notify.DefaultOptions()
	opts.Backoff, opts.Poll = backoff.Policy{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}, 50*time.Millisecond
	n := notify.New(pool, []string{url}, key, conn.Conn, opts, log, reg)
	proj := &projection.Projector{DB: pool, Rules: b.Rules, Cache: projection.NewEventCache(100 << 10), Log: log, Metrics: m, Notify: n}
	c, err := ingest.NewConsumer(tb.Context(), js, pool, proj, processortest.TestOptions(), log, ingest.NewMetrics(reg))
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() { n.Run(ctx) })
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			conn.Conn.Close()
			pool.Close()
		})
	}
	tb.Cleanup(stop)
	return stop
}

func TestNotificationsReachTheApp(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	key := []byte("0123456789abcdef01234567")
	s := &sink{key: key, latest: map[string]outbox.Body{}, ids: map[string]string{}}
	app := httptest.NewServer(s)
	t.Cleanup(app.Close)

	sub := b.Nats.Connect(t)
	var natsMu sync.Mutex
	onNATS := map[string]int{}
	_, err := sub.Subscribe("tollgate.entitlements.>", func(m *nats.Msg) {
		natsMu.Lock()
		defer natsMu.Unlock()
		onNATS[m.Subject]++
	})
	require.NoError(t, err)

	k := processortest.NewKit(t, "nt")
	events := k.Population(30)
	// A user who loses its last customer: one last notification, premium false.
	lone := k.Signup("cus_ntlone", "u_ntlone", "sub_ntlone", "price_basic", processortest.T0)
	move := k.CustomerUpdated("cus_ntlone", processortest.T0+86400, "u_ntlone", "u_ntother")
	half := len(events) / 2
	first := append(events[:half:half], lone...)

	b.Publish(t, first...)
	stop := bundleStartNotifying(b, t, app.URL, key)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, first...), 30*time.Second)
	stop() // a restart, with notifications possibly still pending or half-delivered

	rest := append(events[half:], move)
	all := append(first, rest...)
	b.Publish(t, rest...)
	bundleStartNotifying(b, t, app.URL, key)
	want := processortest.Expect(t, b.Rules, all...)
	processortest.CaughtUp(t, b.DB.Pool, want, 30*time.Second)

	final := func(user string) outbox.Answer {
		u, err := entitlement.GetUser(context.Background(), b.DB.Pool, scope.Key{ID: user}) // test mode
		if err != nil {
			return outbox.Answer{UserID: &user, CustomerIDs: []string{}, Status: "none", Features: []string{}}
		}
		return outbox.Answer{UserID: &user, CustomerIDs: u.CustomerIDs, Premium: u.Premium, Status: u.Status, Features: u.Features}
	}
	users := []string{"u_ntlone"}
	for k := range want.Users {
		users = append(users, k.ID)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, u := range users {
				if got, w := s.latest[u].Data, final(u); got.Premium != w.Premium || got.Status != w.Status {
					t.Logf("%s: got premium %t %s, want %t %s", u, got.Premium, got.Status, w.Premium, w.Status)
				}
			}
			st, _ := outbox.Count(context.Background(), b.DB.Pool)
			t.Logf("outbox %+v, requests %d", st, s.n)
		}
	})
	wait.For(t, 30*time.Second, "every user's last notification is its final answer", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, u := range users {
			got, ok := s.latest[u]
			w := final(u)
			if !ok || got.Data.Premium != w.Premium || got.Data.Status != w.Status ||
				strings.Join(got.Data.Features, ",") != strings.Join(w.Features, ",") ||
				strings.Join(got.Data.CustomerIDs, ",") != strings.Join(w.CustomerIDs, ",") {
				return false
			}
		}
		return true
	})
	s.mu.Lock()
	require.Zero(t, s.invalid, "deliveries with an invalid signature or body")
	require.Zero(t, s.unstable, "a retry under another webhook-id")
	require.False(t, s.latest["u_ntlone"].Data.Premium)
	require.Equal(t, "none", s.latest["u_ntlone"].Data.Status)
	require.False(t, s.latest["u_ntlone"].Data.Livemode, "stripetest events are test mode")
	s.mu.Unlock()
	wait.For(t, 10*time.Second, "changes on NATS", func() bool {
		natsMu.Lock()
		defer natsMu.Unlock()
		return onNATS["tollgate.entitlements.test.u_ntlone"] >= 2
	})
	// Older notifications refused by the sink are still being retried; all end delivered.
	wait.For(t, 30*time.Second, "every notification delivered", func() bool {
		st, err := outbox.Count(t.Context(), b.DB.Pool)
		return err == nil && st.Pending == 0 && st.Failed == 0
	})
}

// A replay with changed rules changes answers: it records their notifications too, and a
// second replay with the same rules records none.
func TestReplayRecordsNotifications(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "rn")
	events := append(k.Signup("cus_rn1", "u_rn", "sub_rn1", "price_1", processortest.T0),
		k.Subscription("customer.subscription.updated", "cus_rn1", "sub_rn1", "past_due", "price_1", processortest.T0+86400, map[string]any{"status": "active"}))
	reg := prometheus.NewRegistry()
	n := notify.New(b.DB.Pool, []string{"http://app.invalid/hooks"}, []byte("0123456789abcdef01234567"), nil, notify.DefaultOptions(), processortest.TestLogger(t), reg)
	proj := &projection.Projector{DB: b.DB.Pool, Rules: b.Rules, Log: processortest.TestLogger(t), Metrics: projection.NewMetrics(reg), Notify: n}
	var in []projection.Admitted
	for _, raw := range events {
		a, err := projection.Admit(raw)
		require.NoError(t, err)
		in = append(in, a)
	}
	_, err := proj.Apply(t.Context(), projection.Input{Events: in})
	require.NoError(t, err)
	pending := func() int64 {
		st, err := outbox.Count(t.Context(), b.DB.Pool)
		require.NoError(t, err)
		return st.Pending
	}
	require.Equal(t, int64(1), pending(), "first appearance")

	proj.Rules.PastDueGrants = false
	_, err = proj.Apply(t.Context(), projection.Input{Customers: []scope.Key{{ID: "cus_rn1"}}, RefreshAllUsers: true})
	require.NoError(t, err)
	require.Equal(t, int64(2), pending(), "past_due no longer grants: a change")
	_, err = proj.Apply(t.Context(), projection.Input{Customers: []scope.Key{{ID: "cus_rn1"}}, RefreshAllUsers: true})
	require.NoError(t, err)
	require.Equal(t, int64(2), pending(), "the same rules again: no change")
}
