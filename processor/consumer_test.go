package main

import (
	"bytes"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/operate"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/wait"
)

func TestConsumerAppliesEventsInAnyOrderWithDuplicates(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	ctx := t.Context()
	k := processortest.NewKit(t, "a")
	b.Start(t, processortest.TestOptions(), b.DB.URL)

	// User u_42 signs up: customer, checkout, subscription incomplete then active, invoice paid.
	signup := k.Signup("cus_A", "u_42", "sub_A", "price_basic", processortest.T0)
	b.Publish(t, processortest.ShuffledWithDuplicates(1, signup)...)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, signup...), 10*time.Second)
	v, err := entitlement.GetUser(ctx, b.DB.Pool, scope.Key{ID: "u_42"})
	require.NoError(t, err)
	require.True(t, v.Premium)
	require.Equal(t, "active", v.Status)
	require.Equal(t, []string{"premium"}, v.Features)
	require.Equal(t, []string{"cus_A"}, v.CustomerIDs)
	require.Equal(t, "sub_A", v.Subscriptions[0].ID)

	// Later: u_42 cancels at period end, the subscription ends, and meanwhile the same user pays
	// with a second customer. Other customers and a catalog event arrive in between.
	later := [][]byte{
		k.CancelAtPeriodEnd("cus_A", "sub_A", "price_basic", processortest.T0+20*86400),
		k.Subscription("customer.subscription.deleted", "cus_A", "sub_A", "canceled", "price_basic", processortest.T0+30*86400, nil),
		k.ProductUpdated(processortest.T0 + 86400),
	}
	later = append(later, k.Signup("cus_B", "u_42", "sub_B", "price_pro", processortest.T0+25*86400)...)
	later = append(later, k.Population(30)...)
	all := append(append([][]byte{}, signup...), later...)
	b.Publish(t, processortest.ShuffledWithDuplicates(2, later)...)
	// Duplicates past JetStream's 72 h window carry a Nats-Msg-Id the stream has not seen.
	for _, raw := range later[:10] {
		ev, err := stripeevent.Parse(raw)
		require.NoError(t, err)
		_, err = b.JS.Publish(ctx, stream.Subject(ev.CustomerID, ev.Type), raw, jetstream.WithMsgID(ev.ID+"-retried-days-later"))
		require.NoError(t, err)
	}

	want := processortest.Expect(t, b.Rules, all...)
	processortest.CaughtUp(t, b.DB.Pool, want, 20*time.Second)
	b.Drained(t, processortest.TestOptions().Durable, 10*time.Second)
	processortest.RequireReadModel(t, b.DB.Pool, want)

	a, err := entitlement.GetCustomer(ctx, b.DB.Pool, scope.Key{ID: "cus_A"})
	require.NoError(t, err)
	require.False(t, a.Premium)
	require.Equal(t, "canceled", a.Status)
	require.Equal(t, []string{}, a.Features)
	require.Equal(t, "u_42", a.UserID)
	require.NotNil(t, a.Subscriptions[0].EndedAt)
	u, err := entitlement.GetUser(ctx, b.DB.Pool, scope.Key{ID: "u_42"})
	require.NoError(t, err)
	require.True(t, u.Premium, "the second customer's subscription grants")
	require.Equal(t, "active", u.Status)
	require.Equal(t, []string{"cus_A", "cus_B"}, u.CustomerIDs)

	// Every event stored once, the catalog event too (without a customer).
	require.Equal(t, len(all), processortest.StoredEvents(t, b.DB.Pool))
	var none int
	require.NoError(t, b.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM stripe_events WHERE customer_id IS NULL`).Scan(&none))
	require.Equal(t, 1, none)
	var methods []string
	require.NoError(t, b.DB.Pool.QueryRow(ctx, `SELECT array_agg(DISTINCT pg_column_compression(payload)) FROM stripe_events
		WHERE pg_column_compression(payload) IS NOT NULL`).Scan(&methods))
	require.Equal(t, []string{"lz4"}, methods, "payloads compressed with lz4 (see openPool)")
	n, err := eventstore.CountDeadLetters(ctx, b.DB.Pool)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestConsumerStoppedMidBatchThenRestartedGivesTheSameResult(t *testing.T) {
	t.Parallel()
	for _, stage := range []string{"fetched", "committed"} {
		t.Run("killed after "+stage, func(t *testing.T) {
			t.Parallel()
			k := processortest.NewKit(t, "c")
			events := processortest.ShuffledWithDuplicates(3, k.Population(40))
			opts := processortest.TestOptions()
			opts.BatchSize = 25

			b := processortest.Setup(t)
			b.Publish(t, events...)
			crashing := opts
			var batches atomic.Int32
			crashing.Crash = func(s string) bool { return s == stage && batches.Add(1) == 3 }
			first := b.Start(t, crashing, b.DB.URL)
			require.ErrorIs(t, first.Wait(t), ingest.ErrCrashed)
			require.ErrorIs(t, first.Stop(), ingest.ErrCrashed) // its connection closes; its batch is unacknowledged
			stored := processortest.StoredEvents(t, b.DB.Pool)
			if stage == "committed" {
				require.Equal(t, 3*opts.BatchSize, stored, "three batches committed")
			} else {
				require.Equal(t, 2*opts.BatchSize, stored, "two batches committed")
			}

			second := b.Start(t, opts, b.DB.URL)
			want := processortest.Expect(t, b.Rules, events...)
			processortest.CaughtUp(t, b.DB.Pool, want, 20*time.Second)
			b.Drained(t, opts.Durable, 10*time.Second)
			require.GreaterOrEqual(t, processortest.Counter(second.Metrics.Redeliveries), float64(opts.BatchSize),
				"the killed instance's batch came back")

			// The same events through an instance that was never killed.
			clean := processortest.Setup(t)
			clean.Publish(t, events...)
			clean.Start(t, opts, clean.DB.URL)
			processortest.CaughtUp(t, clean.DB.Pool, want, 20*time.Second)
			require.Equal(t, processortest.ReadModel(t, clean.DB.Pool), processortest.ReadModel(t, b.DB.Pool))
			require.Equal(t, processortest.StoredEvents(t, clean.DB.Pool), processortest.StoredEvents(t, b.DB.Pool))
		})
	}
}

func TestTwoInstancesReachTheSameReadModelAsOne(t *testing.T) {
	t.Parallel()
	k := processortest.NewKit(t, "t")
	events := processortest.ShuffledWithDuplicates(4, k.Population(90))
	opts := processortest.TestOptions()
	opts.BatchSize = 10 // many small batches, so the two instances interleave on shared users

	two := processortest.Setup(t)
	two.Publish(t, events...)
	a := two.Start(t, opts, two.DB.URL)
	b := two.Start(t, opts, two.DB.URL)

	one := processortest.Setup(t)
	one.Publish(t, events...)
	one.Start(t, opts, one.DB.URL)

	want := processortest.Expect(t, two.Rules, events...)
	processortest.CaughtUp(t, two.DB.Pool, want, 30*time.Second)
	processortest.CaughtUp(t, one.DB.Pool, want, 30*time.Second)
	two.Drained(t, opts.Durable, 10*time.Second)
	require.Equal(t, processortest.ReadModel(t, one.DB.Pool), processortest.ReadModel(t, two.DB.Pool))
	require.Positive(t, processortest.Counter(a.Metrics.Outcomes.WithLabelValues("ack")), "instance a applied events")
	require.Positive(t, processortest.Counter(b.Metrics.Outcomes.WithLabelValues("ack")), "instance b applied events")
}

func TestPostgresOutageLosesNothing(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	cc := b.DB.Pool.Config().ConnConfig
	proxy := newTCPProxy(t, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))))
	in := b.Start(t, processortest.TestOptions(), proxy.proxyURL(t, b.DB.URL))
	k := processortest.NewKit(t, "o")

	before := k.Population(10)
	b.Publish(t, before...)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, before...), 10*time.Second)

	proxy.cut()
	cutAt := time.Now()
	during := append(k.Population(10), k.CancelAtPeriodEnd("cus_o0000", "sub_o0000", "price_basic", processortest.T0+86400*40))
	b.Publish(t, during...)
	wait.For(t, 10*time.Second, "a batch failed while Postgres was away", func() bool {
		return processortest.Counter(in.Metrics.Outcomes.WithLabelValues("retry")) > 0
	})
	wait.For(t, 10*time.Second, "fetching paused for a while", func() bool {
		return processortest.Counter(in.Metrics.Paused) == 1 && time.Since(cutAt) > 1500*time.Millisecond
	})
	require.Equal(t, len(before), processortest.StoredEvents(t, b.DB.Pool), "nothing applied while Postgres is away")
	proxy.restore()

	all := append(append([][]byte{}, before...), during...)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, all...), 20*time.Second)
	b.Drained(t, processortest.TestOptions().Durable, 10*time.Second)
	require.Equal(t, len(all), processortest.StoredEvents(t, b.DB.Pool))
	n, err := eventstore.CountDeadLetters(t.Context(), b.DB.Pool)
	require.NoError(t, err)
	require.Zero(t, n, "an outage dead-letters nothing")
}

func TestShutdownFinishesTheBatchInProgress(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "s")
	events := k.Population(20)
	b.Publish(t, events...)
	opts := processortest.TestOptions()
	opts.BatchSize = 40
	committed, cancelled := make(chan struct{}), make(chan struct{})
	opts.Crash = func(stage string) bool {
		if stage == "committed" {
			close(committed)
			<-cancelled // SIGTERM arrives between the commit and the acknowledgments
		}
		return false
	}
	in := b.Start(t, opts, b.DB.URL)
	<-committed
	in.Cancel()
	close(cancelled)
	require.NoError(t, in.Wait(t))

	require.Equal(t, opts.BatchSize, processortest.StoredEvents(t, b.DB.Pool), "exactly the batch in progress")
	cons, err := b.JS.Consumer(t.Context(), stream.Name, opts.Durable)
	require.NoError(t, err)
	wait.For(t, 5*time.Second, "the finished batch is acknowledged", func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.AckFloor.Stream == uint64(opts.BatchSize)
	})
	require.Positive(t, processortest.Counter(in.Metrics.Outcomes.WithLabelValues("released")), "the batch fetched ahead was handed back")

	// The rest is there for the next instance.
	opts.Crash = nil
	b.Start(t, opts, b.DB.URL)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, events...), 10*time.Second)
	b.Drained(t, opts.Durable, 10*time.Second)
}

func TestPoisonEventsAreDeadLetteredAndTheRestFlows(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	ctx := t.Context()
	k := processortest.NewKit(t, "p")
	in := b.Start(t, processortest.TestOptions(), b.DB.URL)

	good := k.Population(12)
	unparseable := []byte(`{"id": "evt_ptrunc", "object": "event", "type": "customer.subscription.updated", "created": 1760000000, "data": {"object": {"id": "sub_`)
	undecodable := k.Edit(k.Subscription("customer.subscription.updated", "cus_p0001", "sub_p0001", "active", "price_pro", processortest.T0+5*86400, nil),
		func(_, obj map[string]any) { obj["status"] = 42 })
	nul := k.CustomerCreated("cus_p\x00null", processortest.T0, "u_p")
	r := rand.New(rand.NewPCG(5, 5))
	var long strings.Builder
	for range 2800 { // incompressible, so no btree index can hold it (and still within NATS's 4 KiB control line)
		long.WriteByte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[r.IntN(62)])
	}
	tooLong := k.CustomerCreated("cus_"+long.String(), processortest.T0, "u_p")

	b.Publish(t, good[:30]...)
	seqs := map[string]uint64{
		"unparseable": b.PublishRaw(t, "stripe.events.sub_ptrunc.customer.subscription.updated", unparseable),
		"undecodable": b.PublishRaw(t, stream.Subject("cus_p0001", "customer.subscription.updated"), undecodable),
		"nul":         b.PublishRaw(t, stream.Subject("cus_p\x00null", "customer.created"), nul),
		"too long":    b.PublishRaw(t, stream.Subject("cus_"+long.String(), "customer.created"), tooLong),
	}
	b.Publish(t, good[30:]...)

	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, good...), 20*time.Second)
	wait.For(t, 20*time.Second, "four dead letters", func() bool {
		n, err := eventstore.CountDeadLetters(ctx, b.DB.Pool)
		return err == nil && n == 4
	})
	b.Drained(t, processortest.TestOptions().Durable, 10*time.Second)
	require.Equal(t, len(good), processortest.StoredEvents(t, b.DB.Pool), "only the good events are stored")

	letters, err := eventstore.ListDeadLetters(ctx, b.DB.Pool, "")
	require.NoError(t, err)
	bySeq := map[uint64]eventstore.DeadLetter{}
	for _, d := range letters {
		bySeq[d.StreamSeq] = d
	}
	for _, tc := range []struct {
		name     string
		raw      []byte
		eventID  string
		attempts int
		reason   string
	}{
		{"unparseable", unparseable, "", 1, "unparseable"},                      // can never parse: at once
		{"nul", nul, ingest.EventIDOf(nul), 1, "NUL character in its customer"}, // can never be stored: at once
		{"undecodable", undecodable, ingest.EventIDOf(undecodable), 3, "undecodable"},
		{"too long", tooLong, ingest.EventIDOf(tooLong), 3, "cannot be applied"}, // Postgres refused it within a batch
	} {
		d, ok := bySeq[seqs[tc.name]]
		require.True(t, ok, tc.name)
		require.True(t, bytes.Equal(tc.raw, d.Payload), "%s: raw bytes kept", tc.name)
		require.Equal(t, tc.eventID, d.EventID, tc.name)
		require.Equal(t, tc.attempts, d.Attempts, tc.name)
		require.Contains(t, d.Reason, tc.reason, tc.name)
		require.True(t, strings.HasPrefix(d.Subject, "stripe.events."), tc.name)
	}
	require.InDelta(t, 4, processortest.Counter(in.Metrics.Outcomes.WithLabelValues("dead_letter")), 0)

	env := func(name string) string { return map[string]string{"DATABASE_URL": b.DB.URL}[name] }
	var out, errOut bytes.Buffer
	require.NoError(t, run(ctx, []string{"dlq", "list"}, env, &out, &errOut))
	require.Contains(t, out.String(), "ID  ")
	require.Contains(t, out.String(), ingest.EventIDOf(undecodable))
	require.Equal(t, 5, strings.Count(out.String(), "\n"), out.String())

	// With the same code, redrive changes nothing: each stays, with one more attempt.
	out.Reset()
	err = run(ctx, []string{"dlq", "redrive"}, env, &out, &errOut)
	require.ErrorIs(t, err, operate.ErrStillFailing)
	require.Contains(t, out.String(), "0 applied, 4 still failing")
	after, err := eventstore.ListDeadLetters(ctx, b.DB.Pool, "")
	require.NoError(t, err)
	require.Len(t, after, 4)
	for i := range after {
		require.Equal(t, letters[i].Attempts+1, after[i].Attempts)
	}

	// An event an older version dead-lettered, which this version applies.
	late := k.Signup("cus_late", "u_late", "sub_late", "price_basic", processortest.T0)
	require.NoError(t, eventstore.RecordDeadLetter(ctx, b.DB.Pool, eventstore.DeadLetter{EventID: ingest.EventIDOf(late[3]), Subject: "stripe.events.cus_late.customer.subscription.updated",
		StreamSeq: 999_999, Payload: late[3], Reason: "undecodable (old decoder)", Attempts: 3}))
	out.Reset()
	require.NoError(t, run(ctx, []string{"dlq", "redrive", ingest.EventIDOf(late[3])}, env, &out, &errOut))
	require.Contains(t, out.String(), "1 applied, 0 still failing")
	left, err := eventstore.ListDeadLetters(ctx, b.DB.Pool, ingest.EventIDOf(late[3]))
	require.NoError(t, err)
	require.Empty(t, left)
	c, err := entitlement.GetCustomer(ctx, b.DB.Pool, scope.Key{ID: "cus_late"})
	require.NoError(t, err)
	require.Equal(t, "active", c.Status)
	require.Equal(t, ingest.EventIDOf(late[3]), c.LastEventID)

	err = run(ctx, []string{"dlq", "redrive", "evt_unknown"}, env, &out, &errOut)
	require.ErrorContains(t, err, "no dead letter for event evt_unknown")
}

func TestNATSRestartLosesNothing(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	in := b.Start(t, processortest.TestOptions(), b.DB.URL)
	k := processortest.NewKit(t, "n")
	before := k.Population(10)
	b.Publish(t, before...)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, before...), 10*time.Second)

	b.Nats.Restart(t)
	js := b.Nats.JetStream(t) // a fresh connection: the first one may still be reconnecting
	after := k.Population(10)
	for _, raw := range after {
		ev, err := stripeevent.Parse(raw)
		require.NoError(t, err)
		_, err = js.Publish(t.Context(), stream.Subject(ev.CustomerID, ev.Type), raw, jetstream.WithMsgID(ev.ID))
		require.NoError(t, err)
	}
	all := append(append([][]byte{}, before...), after...)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, all...), 30*time.Second)
	require.Equal(t, len(all), processortest.StoredEvents(t, b.DB.Pool))
	require.Zero(t, processortest.Counter(in.Metrics.Outcomes.WithLabelValues("dead_letter")))
}
