// Package processortest is the processor's test world, shared by the tests of its packages and
// of its commands: an embedded JetStream with the stream, a fresh database, a running consumer,
// Stripe events built from fixtures, the read model the contract expects, and a fake Stripe API's
// events.
package processortest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/pgpool"
	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/natsconn"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// Bundle is one test's world: an embedded JetStream with the stream, a fresh database and the
// rules the processor derives with.
type Bundle struct {
	Nats  *natstest.Server
	JS    jetstream.JetStream
	DB    *pgtest.DB
	Rules subscription.Rules
}

func Setup(tb testing.TB) *Bundle {
	tb.Helper()
	ns := natstest.Start(tb)
	js := ns.JetStream(tb)
	_, err := stream.Ensure(tb.Context(), js, stream.Options{})
	require.NoError(tb, err)
	return &Bundle{Nats: ns, JS: js, DB: pgtest.New(tb), Rules: subscription.DefaultRules()}
}

// TestOptions are consumer options with waits short enough for tests.
func TestOptions() ingest.Options {
	o := ingest.DefaultOptions()
	o.BatchSize = 50
	o.MaxBatch = 0 // batches of BatchSize: the tests count them
	o.FetchWait = 200 * time.Millisecond
	o.AckWait = 2 * time.Second
	o.TxTimeout = 1500 * time.Millisecond
	o.PoisonRetryDelay = 50 * time.Millisecond
	return o
}

func TestLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// instance is one running processor consumer with its own NATS connection and pool, as a
// separate process would have.
type instance struct {
	Consumer *ingest.Consumer
	Metrics  *ingest.Metrics
	Reg      *prometheus.Registry
	pool     *pgxpool.Pool
	nc       *nats.Conn
	Cancel   context.CancelFunc
	done     chan error
	once     sync.Once
	err      error
}

// Start runs a consumer against databaseURL until the test ends or stop is called.
func (b *Bundle) Start(tb testing.TB, opts ingest.Options, databaseURL string) *instance {
	tb.Helper()
	log := TestLogger(tb)
	conn, err := natsconn.Connect(b.Nats.URL(), "tollgate-processor", "test", log)
	require.NoError(tb, err)
	nc := conn.Conn
	js, err := jetstream.New(nc)
	require.NoError(tb, err)
	pool, err := pgpool.Open(tb.Context(), databaseURL)
	require.NoError(tb, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := ingest.NewMetrics(reg)
	proj := &projection.Projector{DB: pool, Rules: b.Rules, Cache: projection.NewEventCache(projection.DefaultEventCacheSize), Log: log, Metrics: projection.NewMetrics(reg)}
	c, err := ingest.NewConsumer(tb.Context(), js, pool, proj, opts, log, m)
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{Consumer: c, Metrics: m, Reg: reg, pool: pool, nc: nc, Cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- c.Run(ctx) }()
	tb.Cleanup(func() { _ = in.Stop() })
	return in
}

// Stop cancels the consumer, waits for it and closes its connections; it returns run's error.
func (in *instance) Stop() error {
	in.once.Do(func() {
		in.Cancel()
		in.err = <-in.done
		in.nc.Close()
		in.pool.Close()
	})
	return in.err
}

// Wait returns run's error once it returned on its own (the crash hook).
func (in *instance) Wait(tb testing.TB) error {
	tb.Helper()
	select {
	case err := <-in.done:
		in.done <- err
		return err
	case <-time.After(10 * time.Second):
		tb.Fatal("consumer did not stop")
		return nil
	}
}

// Publish stores raw events in the stream as the listener does: on the event's subject, with
// the event id as Nats-Msg-Id. It returns how many JetStream stored (not duplicates).
func (b *Bundle) Publish(tb testing.TB, raws ...[]byte) int {
	tb.Helper()
	stored := 0
	for _, raw := range raws {
		ev, err := stripeevent.Parse(raw)
		require.NoError(tb, err)
		ack, err := b.JS.Publish(tb.Context(), stream.Subject(ev.CustomerID, ev.Type), raw, jetstream.WithMsgID(ev.ID))
		require.NoError(tb, err)
		if !ack.Duplicate {
			stored++
		}
	}
	return stored
}

// PublishRaw stores bytes that may not be a Stripe event on a subject.
func (b *Bundle) PublishRaw(tb testing.TB, subject string, raw []byte) uint64 {
	tb.Helper()
	ack, err := b.JS.Publish(tb.Context(), subject, raw)
	require.NoError(tb, err)
	return ack.Sequence
}

// Drained waits until the durable consumer has nothing pending or unacknowledged.
func (b *Bundle) Drained(tb testing.TB, durable string, within time.Duration) {
	tb.Helper()
	var last *jetstream.ConsumerInfo
	wait.For(tb, within, fmt.Sprintf("consumer %s not drained: %+v", durable, last), func() bool {
		c, err := b.JS.Consumer(tb.Context(), stream.Name, durable)
		if err != nil {
			return false
		}
		info, err := c.Info(tb.Context())
		if err != nil {
			return false
		}
		last = info
		return info.NumPending == 0 && info.NumAckPending == 0
	})
}

func StoredEvents(tb testing.TB, pool *pgxpool.Pool) int {
	tb.Helper()
	var n int
	require.NoError(tb, pool.QueryRow(tb.Context(), `SELECT count(*) FROM stripe_events`).Scan(&n))
	return n
}

// ReadModel renders both read-model tables, updated_at aside, one line per row in key order,
// so two databases can be compared for identical results.
func ReadModel(tb testing.TB, pool *pgxpool.Pool) string {
	tb.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT concat_ws(' | ', customer_id, coalesce(user_id, '-'), deleted, premium, status, features::text, subscriptions::text,
			last_event_id, extract(epoch FROM last_event_created)) FROM customer_entitlements ORDER BY customer_id`,
		`SELECT concat_ws(' | ', user_id, customer_ids::text, premium, status, features::text, subscriptions::text,
			last_event_id, extract(epoch FROM last_event_created)) FROM user_entitlements ORDER BY user_id`,
	} {
		rows, err := pool.Query(tb.Context(), q)
		require.NoError(tb, err)
		for rows.Next() {
			var line string
			require.NoError(tb, rows.Scan(&line))
			b.WriteString(line + "\n")
		}
		require.NoError(tb, rows.Err())
		b.WriteString("--\n")
	}
	return b.String()
}

// Expected is the read model the contract asks for, computed without the processor: each
// customer's whole history through subscription.Derive and entitlement.FromState, and each
// user's union through subscription.Merge.
// Everything is per scope: a customer's history is its events of one scope, a user's union is over
// the customers of one scope.
type Expected struct {
	Customers map[scope.Key]entitlement.Customer
	Users     map[scope.Key]expectedUser
}

type expectedUser struct {
	CustomerIDs []string
	Premium     bool
	Status      string
	Features    []string
}

func Expect(tb testing.TB, rules subscription.Rules, raws ...[]byte) Expected {
	tb.Helper()
	byCustomer := map[scope.Key][]subscription.Event{}
	for _, raw := range raws {
		ev, err := stripeevent.Parse(raw)
		require.NoError(tb, err)
		if ev.CustomerID == "" {
			continue
		}
		d, err := subscription.Decode(ev)
		require.NoError(tb, err)
		k := projection.ScopeOf(ev).Of(ev.CustomerID)
		byCustomer[k] = append(byCustomer[k], d)
	}
	out := Expected{Customers: map[scope.Key]entitlement.Customer{}, Users: map[scope.Key]expectedUser{}}
	ents := map[scope.Key][]subscription.Entitlement{}
	for k, events := range byCustomer {
		st := subscription.Derive(k.ID, events, rules)
		out.Customers[k] = entitlement.FromState(k.Scope, st, rules)
		if st.UserID != "" {
			uk := k.Of(st.UserID)
			u := out.Users[uk]
			u.CustomerIDs = append(u.CustomerIDs, k.ID)
			out.Users[uk] = u
			ents[uk] = append(ents[uk], st.Entitlement(rules))
		}
	}
	for id, u := range out.Users {
		m := subscription.Merge(ents[id]...)
		slices.Sort(u.CustomerIDs)
		u.Premium, u.Status, u.Features = m.Premium, m.Status, m.Features
		out.Users[id] = u
	}
	return out
}

// RequireReadModel checks that the database holds exactly the expected read model.
func RequireReadModel(tb testing.TB, pool *pgxpool.Pool, want Expected) {
	tb.Helper()
	ctx := tb.Context()
	got, err := entitlement.LoadCustomers(ctx, pool, Keys(want.Customers))
	require.NoError(tb, err)
	for id, w := range want.Customers {
		g, ok := got[id]
		require.Truef(tb, ok, "no read model row for customer %s", id)
		require.Truef(tb, g.Same(w), "customer %s:\n got %+v\nwant %+v", id, g, w)
	}
	var customers, users int
	require.NoError(tb, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM customer_entitlements), (SELECT count(*) FROM user_entitlements)`).
		Scan(&customers, &users))
	require.Equal(tb, len(want.Customers), customers, "customer rows")
	require.Equal(tb, len(want.Users), users, "user rows")
	for id, w := range want.Users {
		v, err := entitlement.GetUser(ctx, pool, id)
		require.NoError(tb, err, "user %s", id)
		require.Equal(tb, expectedUser{CustomerIDs: v.CustomerIDs, Premium: v.Premium, Status: v.Status, Features: v.Features}, w, "user %s", id)
	}
}

// CaughtUp waits until the read model is the expected one.
func CaughtUp(tb testing.TB, pool *pgxpool.Pool, want Expected, within time.Duration) {
	tb.Helper()
	n := len(want.Customers)
	wait.For(tb, within, "read model did not catch up", func() bool {
		var rows int
		if err := pool.QueryRow(tb.Context(), `SELECT count(*) FROM customer_entitlements`).Scan(&rows); err != nil || rows < n {
			return false
		}
		got, err := entitlement.LoadCustomers(tb.Context(), pool, Keys(want.Customers))
		if err != nil {
			return false
		}
		for id, w := range want.Customers {
			if g, ok := got[id]; !ok || !g.Same(w) {
				return false
			}
		}
		return true
	})
	RequireReadModel(tb, pool, want)
}

func Keys[V any](m map[scope.Key]V) []scope.Key {
	out := make([]scope.Key, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, scope.Compare)
	return out
}

func Counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
