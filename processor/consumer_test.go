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
	b := setup(t)
	ctx := t.Context()
	k := newKit(t, "a")
	b.start(t, testOptions(), b.db.URL)

	// User u_42 signs up: customer, checkout, subscription incomplete then active, invoice paid.
	signup := k.signup("cus_A", "u_42", "sub_A", "price_basic", t0)
	b.publish(t, shuffledWithDuplicates(1, signup)...)
	caughtUp(t, b.db.Pool, expect(t, b.rules, signup...), 10*time.Second)
	v, err := entitlement.GetUser(ctx, b.db.Pool, scope.Key{ID: "u_42"})
	require.NoError(t, err)
	require.True(t, v.Premium)
	require.Equal(t, "active", v.Status)
	require.Equal(t, []string{"premium"}, v.Features)
	require.Equal(t, []string{"cus_A"}, v.CustomerIDs)
	require.Equal(t, "sub_A", v.Subscriptions[0].ID)

	// Later: u_42 cancels at period end, the subscription ends, and meanwhile the same user pays
	// with a second customer. Other customers and a catalog event arrive in between.
	later := [][]byte{
		k.cancelAtPeriodEnd("cus_A", "sub_A", "price_basic", t0+20*86400),
		k.subscription("customer.subscription.deleted", "cus_A", "sub_A", "canceled", "price_basic", t0+30*86400, nil),
		k.productUpdated(t0 + 86400),
	}
	later = append(later, k.signup("cus_B", "u_42", "sub_B", "price_pro", t0+25*86400)...)
	later = append(later, k.population(30)...)
	all := append(append([][]byte{}, signup...), later...)
	b.publish(t, shuffledWithDuplicates(2, later)...)
	// Duplicates past JetStream's 72 h window carry a Nats-Msg-Id the stream has not seen.
	for _, raw := range later[:10] {
		ev, err := stripeevent.Parse(raw)
		require.NoError(t, err)
		_, err = b.js.Publish(ctx, stream.Subject(ev.CustomerID, ev.Type), raw, jetstream.WithMsgID(ev.ID+"-retried-days-later"))
		require.NoError(t, err)
	}

	want := expect(t, b.rules, all...)
	caughtUp(t, b.db.Pool, want, 20*time.Second)
	b.drained(t, testOptions().Durable, 10*time.Second)
	requireReadModel(t, b.db.Pool, want)

	a, err := entitlement.GetCustomer(ctx, b.db.Pool, scope.Key{ID: "cus_A"})
	require.NoError(t, err)
	require.False(t, a.Premium)
	require.Equal(t, "canceled", a.Status)
	require.Equal(t, []string{}, a.Features)
	require.Equal(t, "u_42", a.UserID)
	require.NotNil(t, a.Subscriptions[0].EndedAt)
	u, err := entitlement.GetUser(ctx, b.db.Pool, scope.Key{ID: "u_42"})
	require.NoError(t, err)
	require.True(t, u.Premium, "the second customer's subscription grants")
	require.Equal(t, "active", u.Status)
	require.Equal(t, []string{"cus_A", "cus_B"}, u.CustomerIDs)

	// Every event stored once, the catalog event too (without a customer).
	require.Equal(t, len(all), storedEvents(t, b.db.Pool))
	var none int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM stripe_events WHERE customer_id IS NULL`).Scan(&none))
	require.Equal(t, 1, none)
	var methods []string
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT array_agg(DISTINCT pg_column_compression(payload)) FROM stripe_events
		WHERE pg_column_compression(payload) IS NOT NULL`).Scan(&methods))
	require.Equal(t, []string{"lz4"}, methods, "payloads compressed with lz4 (see openPool)")
	n, err := eventstore.CountDeadLetters(ctx, b.db.Pool)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestConsumerStoppedMidBatchThenRestartedGivesTheSameResult(t *testing.T) {
	t.Parallel()
	for _, stage := range []string{"fetched", "committed"} {
		t.Run("killed after "+stage, func(t *testing.T) {
			t.Parallel()
			k := newKit(t, "c")
			events := shuffledWithDuplicates(3, k.population(40))
			opts := testOptions()
			opts.BatchSize = 25

			b := setup(t)
			b.publish(t, events...)
			crashing := opts
			var batches atomic.Int32
			crashing.Crash = func(s string) bool { return s == stage && batches.Add(1) == 3 }
			first := b.start(t, crashing, b.db.URL)
			require.ErrorIs(t, first.wait(t), ingest.ErrCrashed)
			require.ErrorIs(t, first.stop(), ingest.ErrCrashed) // its connection closes; its batch is unacknowledged
			stored := storedEvents(t, b.db.Pool)
			if stage == "committed" {
				require.Equal(t, 3*opts.BatchSize, stored, "three batches committed")
			} else {
				require.Equal(t, 2*opts.BatchSize, stored, "two batches committed")
			}

			second := b.start(t, opts, b.db.URL)
			want := expect(t, b.rules, events...)
			caughtUp(t, b.db.Pool, want, 20*time.Second)
			b.drained(t, opts.Durable, 10*time.Second)
			require.GreaterOrEqual(t, counter(second.metrics.Redeliveries), float64(opts.BatchSize),
				"the killed instance's batch came back")

			// The same events through an instance that was never killed.
			clean := setup(t)
			clean.publish(t, events...)
			clean.start(t, opts, clean.db.URL)
			caughtUp(t, clean.db.Pool, want, 20*time.Second)
			require.Equal(t, readModel(t, clean.db.Pool), readModel(t, b.db.Pool))
			require.Equal(t, storedEvents(t, clean.db.Pool), storedEvents(t, b.db.Pool))
		})
	}
}

func TestTwoInstancesReachTheSameReadModelAsOne(t *testing.T) {
	t.Parallel()
	k := newKit(t, "t")
	events := shuffledWithDuplicates(4, k.population(90))
	opts := testOptions()
	opts.BatchSize = 10 // many small batches, so the two instances interleave on shared users

	two := setup(t)
	two.publish(t, events...)
	a := two.start(t, opts, two.db.URL)
	b := two.start(t, opts, two.db.URL)

	one := setup(t)
	one.publish(t, events...)
	one.start(t, opts, one.db.URL)

	want := expect(t, two.rules, events...)
	caughtUp(t, two.db.Pool, want, 30*time.Second)
	caughtUp(t, one.db.Pool, want, 30*time.Second)
	two.drained(t, opts.Durable, 10*time.Second)
	require.Equal(t, readModel(t, one.db.Pool), readModel(t, two.db.Pool))
	require.Positive(t, counter(a.metrics.Outcomes.WithLabelValues("ack")), "instance a applied events")
	require.Positive(t, counter(b.metrics.Outcomes.WithLabelValues("ack")), "instance b applied events")
}

func TestPostgresOutageLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cc := b.db.Pool.Config().ConnConfig
	proxy := newTCPProxy(t, net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))))
	in := b.start(t, testOptions(), proxy.proxyURL(t, b.db.URL))
	k := newKit(t, "o")

	before := k.population(10)
	b.publish(t, before...)
	caughtUp(t, b.db.Pool, expect(t, b.rules, before...), 10*time.Second)

	proxy.cut()
	cutAt := time.Now()
	during := append(k.population(10), k.cancelAtPeriodEnd("cus_o0000", "sub_o0000", "price_basic", t0+86400*40))
	b.publish(t, during...)
	wait.For(t, 10*time.Second, "a batch failed while Postgres was away", func() bool {
		return counter(in.metrics.Outcomes.WithLabelValues("retry")) > 0
	})
	wait.For(t, 10*time.Second, "fetching paused for a while", func() bool {
		return counter(in.metrics.Paused) == 1 && time.Since(cutAt) > 1500*time.Millisecond
	})
	require.Equal(t, len(before), storedEvents(t, b.db.Pool), "nothing applied while Postgres is away")
	proxy.restore()

	all := append(append([][]byte{}, before...), during...)
	caughtUp(t, b.db.Pool, expect(t, b.rules, all...), 20*time.Second)
	b.drained(t, testOptions().Durable, 10*time.Second)
	require.Equal(t, len(all), storedEvents(t, b.db.Pool))
	n, err := eventstore.CountDeadLetters(t.Context(), b.db.Pool)
	require.NoError(t, err)
	require.Zero(t, n, "an outage dead-letters nothing")
}

func TestShutdownFinishesTheBatchInProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := newKit(t, "s")
	events := k.population(20)
	b.publish(t, events...)
	opts := testOptions()
	opts.BatchSize = 40
	committed, cancelled := make(chan struct{}), make(chan struct{})
	opts.Crash = func(stage string) bool {
		if stage == "committed" {
			close(committed)
			<-cancelled // SIGTERM arrives between the commit and the acknowledgments
		}
		return false
	}
	in := b.start(t, opts, b.db.URL)
	<-committed
	in.cancel()
	close(cancelled)
	require.NoError(t, in.wait(t))

	require.Equal(t, opts.BatchSize, storedEvents(t, b.db.Pool), "exactly the batch in progress")
	cons, err := b.js.Consumer(t.Context(), stream.Name, opts.Durable)
	require.NoError(t, err)
	wait.For(t, 5*time.Second, "the finished batch is acknowledged", func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.AckFloor.Stream == uint64(opts.BatchSize)
	})
	require.Positive(t, counter(in.metrics.Outcomes.WithLabelValues("released")), "the batch fetched ahead was handed back")

	// The rest is there for the next instance.
	opts.Crash = nil
	b.start(t, opts, b.db.URL)
	caughtUp(t, b.db.Pool, expect(t, b.rules, events...), 10*time.Second)
	b.drained(t, opts.Durable, 10*time.Second)
}

func TestPoisonEventsAreDeadLetteredAndTheRestFlows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	k := newKit(t, "p")
	in := b.start(t, testOptions(), b.db.URL)

	good := k.population(12)
	unparseable := []byte(`{"id": "evt_ptrunc", "object": "event", "type": "customer.subscription.updated", "created": 1760000000, "data": {"object": {"id": "sub_`)
	undecodable := k.edit(k.subscription("customer.subscription.updated", "cus_p0001", "sub_p0001", "active", "price_pro", t0+5*86400, nil),
		func(_, obj map[string]any) { obj["status"] = 42 })
	nul := k.customerCreated("cus_p\x00null", t0, "u_p")
	r := rand.New(rand.NewPCG(5, 5))
	var long strings.Builder
	for range 2800 { // incompressible, so no btree index can hold it (and still within NATS's 4 KiB control line)
		long.WriteByte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[r.IntN(62)])
	}
	tooLong := k.customerCreated("cus_"+long.String(), t0, "u_p")

	b.publish(t, good[:30]...)
	seqs := map[string]uint64{
		"unparseable": b.publishRaw(t, "stripe.events.sub_ptrunc.customer.subscription.updated", unparseable),
		"undecodable": b.publishRaw(t, stream.Subject("cus_p0001", "customer.subscription.updated"), undecodable),
		"nul":         b.publishRaw(t, stream.Subject("cus_p\x00null", "customer.created"), nul),
		"too long":    b.publishRaw(t, stream.Subject("cus_"+long.String(), "customer.created"), tooLong),
	}
	b.publish(t, good[30:]...)

	caughtUp(t, b.db.Pool, expect(t, b.rules, good...), 20*time.Second)
	wait.For(t, 20*time.Second, "four dead letters", func() bool {
		n, err := eventstore.CountDeadLetters(ctx, b.db.Pool)
		return err == nil && n == 4
	})
	b.drained(t, testOptions().Durable, 10*time.Second)
	require.Equal(t, len(good), storedEvents(t, b.db.Pool), "only the good events are stored")

	letters, err := eventstore.ListDeadLetters(ctx, b.db.Pool, "")
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
	require.InDelta(t, 4, counter(in.metrics.Outcomes.WithLabelValues("dead_letter")), 0)

	env := func(name string) string { return map[string]string{"DATABASE_URL": b.db.URL}[name] }
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
	after, err := eventstore.ListDeadLetters(ctx, b.db.Pool, "")
	require.NoError(t, err)
	require.Len(t, after, 4)
	for i := range after {
		require.Equal(t, letters[i].Attempts+1, after[i].Attempts)
	}

	// An event an older version dead-lettered, which this version applies.
	late := k.signup("cus_late", "u_late", "sub_late", "price_basic", t0)
	require.NoError(t, eventstore.RecordDeadLetter(ctx, b.db.Pool, eventstore.DeadLetter{EventID: ingest.EventIDOf(late[3]), Subject: "stripe.events.cus_late.customer.subscription.updated",
		StreamSeq: 999_999, Payload: late[3], Reason: "undecodable (old decoder)", Attempts: 3}))
	out.Reset()
	require.NoError(t, run(ctx, []string{"dlq", "redrive", ingest.EventIDOf(late[3])}, env, &out, &errOut))
	require.Contains(t, out.String(), "1 applied, 0 still failing")
	left, err := eventstore.ListDeadLetters(ctx, b.db.Pool, ingest.EventIDOf(late[3]))
	require.NoError(t, err)
	require.Empty(t, left)
	c, err := entitlement.GetCustomer(ctx, b.db.Pool, scope.Key{ID: "cus_late"})
	require.NoError(t, err)
	require.Equal(t, "active", c.Status)
	require.Equal(t, ingest.EventIDOf(late[3]), c.LastEventID)

	err = run(ctx, []string{"dlq", "redrive", "evt_unknown"}, env, &out, &errOut)
	require.ErrorContains(t, err, "no dead letter for event evt_unknown")
}

func TestNATSRestartLosesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	in := b.start(t, testOptions(), b.db.URL)
	k := newKit(t, "n")
	before := k.population(10)
	b.publish(t, before...)
	caughtUp(t, b.db.Pool, expect(t, b.rules, before...), 10*time.Second)

	b.nats.Restart(t)
	js := b.nats.JetStream(t) // a fresh connection: the first one may still be reconnecting
	after := k.population(10)
	for _, raw := range after {
		ev, err := stripeevent.Parse(raw)
		require.NoError(t, err)
		_, err = js.Publish(t.Context(), stream.Subject(ev.CustomerID, ev.Type), raw, jetstream.WithMsgID(ev.ID))
		require.NoError(t, err)
	}
	all := append(append([][]byte{}, before...), after...)
	caughtUp(t, b.db.Pool, expect(t, b.rules, all...), 30*time.Second)
	require.Equal(t, len(all), storedEvents(t, b.db.Pool))
	require.Zero(t, counter(in.metrics.Outcomes.WithLabelValues("dead_letter")))
}
