package ingest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/ingest"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/wait"
)

// Hostile events the listener lets through (a year-10000 or INT64_MAX period end inside the
// object) and failures that are not Postgres errors (the fault hook stands in for an encoding
// error nobody foresaw) never stall the pipeline: in one batch with good events, the good ones
// are applied at once and never redelivered, the culprit is dead-lettered after PoisonAttempts
// with its reason, and its customer's later events are applied without it.
func TestHostileEventsNeverHoldBackTheGoodOnes(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "h")
	opts := processortest.TestOptions()
	opts.BatchSize = 100

	good := k.Signup("cus_good", "u_good", "sub_good", "price_basic", processortest.T0)
	poisonCustomer := k.Signup("cus_p", "u_p", "sub_p", "price_basic", processortest.T0)
	poison := k.Subscription("customer.subscription.updated", "cus_p", "sub_p", "past_due", "price_basic", processortest.T0+100, nil)
	later := k.Subscription("customer.subscription.updated", "cus_p", "sub_p", "canceled", "price_basic", processortest.T0+200, nil)
	year10000 := k.Edit(k.Subscription("customer.subscription.updated", "cus_y", "sub_y", "active", "price_basic", processortest.T0+10, nil),
		func(_, obj map[string]any) { obj["current_period_end"] = int64(253402300800) })
	maxInt := k.Edit(k.Subscription("customer.subscription.updated", "cus_m", "sub_m", "active", "price_basic", processortest.T0+10, nil),
		func(_, obj map[string]any) {
			obj["current_period_end"], obj["trial_end"] = int64(1<<63-1), int64(-1<<63)
		})
	hostile := []struct {
		name string
		raw  []byte
	}{
		{"year-10000 current_period_end", year10000},
		{"INT64_MAX current_period_end, INT64_MIN trial_end", maxInt},
	}
	poisonID := ingest.EventIDOf(poison)
	opts.Fault = func(ev stripeevent.Event) error {
		if ev.ID == poisonID {
			return errors.New("encode: an error that is not Postgres's")
		}
		return nil
	}

	var all [][]byte
	all = append(all, poisonCustomer...)
	all = append(all, poison)
	all = append(all, good...)
	for _, h := range hostile {
		all = append(all, h.raw)
	}
	all = append(all, later)
	b.Publish(t, all...) // before the consumer starts: one batch holds them all
	in := b.Start(t, opts, b.DB.URL)

	applied := make([][]byte, 0, len(all))
	for _, raw := range all {
		if ingest.EventIDOf(raw) != poisonID {
			applied = append(applied, raw)
		}
	}
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, applied...), 20*time.Second)
	wait.For(t, 20*time.Second, "the culprit is dead-lettered", func() bool {
		n, err := eventstore.CountDeadLetters(t.Context(), b.DB.Pool)
		return err == nil && n == 1
	})
	b.Drained(t, opts.Durable, 10*time.Second)

	letters, err := eventstore.ListDeadLetters(t.Context(), b.DB.Pool, "")
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.Equal(t, poisonID, letters[0].EventID)
	require.Contains(t, letters[0].Reason, "not Postgres's")
	require.Equal(t, int(opts.PoisonAttempts), letters[0].Attempts)
	require.InDelta(t, float64(opts.PoisonAttempts-1), processortest.Counter(in.Metrics.Redeliveries), 0, "only the culprit came back")

	p, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: "cus_p"})
	require.NoError(t, err)
	require.Equal(t, "canceled", p.Status, "the customer's later event is applied without the dead letter")

	for _, c := range []struct{ id, want string }{{"cus_y", "9999-12-31T23:59:59Z"}, {"cus_m", "9999-12-31T23:59:59Z"}} {
		got, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Key{ID: c.id})
		require.NoError(t, err)
		body, err := json.Marshal(got)
		require.NoError(t, err, "the answer for %s can be encoded", c.id)
		require.Contains(t, string(body), `"current_period_end":"`+c.want+`"`)
	}
}

// A stream far smaller than what passes through it never refuses a publish while the processor
// keeps up: applied events are purged after each batch. (Under limits retention of 30 days and no
// purge the 65th KiB was refused, and the listener answered 503 to every webhook.)
func TestSmallStreamNeverFillsWhileTheProcessorKeepsUp(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	const limit = 64 << 10
	_, err := stream.Ensure(t.Context(), b.JS, stream.Options{MaxBytes: limit})
	require.NoError(t, err)
	in := b.Start(t, processortest.TestOptions(), b.DB.URL)
	k := processortest.NewKit(t, "f")

	published := 0
	for i := 0; published < 20*limit; i++ {
		raws := k.Signup(fmt.Sprintf("cus_f%d", i), fmt.Sprintf("u_f%d", i), fmt.Sprintf("sub_f%d", i), "price_basic", processortest.T0)
		for _, raw := range raws {
			ev, err := stripeevent.Parse(raw)
			require.NoError(t, err)
			// What the listener does: a refusal here is its 503. Stripe's pace is the test's:
			// each webhook after the previous one's answer, and a pause once the stream is
			// half full so the processor can keep up (it does, at this pace, many times over).
			_, err = b.JS.Publish(t.Context(), stream.Subject(ev.CustomerID, ev.Type), raw, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(stream.Name))
			require.NoError(t, err, "publish %d after %d bytes", i, published)
			published += len(raw)
		}
		wait.For(t, 10*time.Second, "the processor keeps up", func() bool {
			s, err := b.JS.Stream(t.Context(), stream.Name)
			return err == nil && s.CachedInfo().State.Bytes < limit/2
		})
	}
	b.Drained(t, processortest.TestOptions().Durable, 10*time.Second)
	wait.For(t, 5*ingest.PurgeEvery, "applied events purged from the stream", func() bool {
		s, err := b.JS.Stream(t.Context(), stream.Name)
		return err == nil && s.CachedInfo().State.Msgs == 0
	})
	require.Zero(t, processortest.Counter(in.Metrics.Outcomes.WithLabelValues("dead_letter")))
	require.Zero(t, processortest.Counter(in.Metrics.PurgeErrors))
	require.Greater(t, published, 20*limit-1)
}

// The purge after each batch removes what is applied and never an event that is not: an event
// waiting for its delayed redelivery stays in the stream, with every event after it, and is the
// oldest unapplied one; once it is applied the stream empties.
func TestPurgeKeepsWhatIsNotApplied(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "pk")
	opts := processortest.TestOptions()
	opts.PoisonRetryDelay = time.Hour
	opts.Fault = func(ev stripeevent.Event) error {
		if ev.CustomerID == "cus_pk1" {
			return errors.New("held back by the test")
		}
		return nil
	}
	in := b.Start(t, opts, b.DB.URL)

	b.Publish(t, k.Signup("cus_pk0", "u_pk0", "sub_pk0", "price_basic", processortest.T0)...)
	b.Drained(t, opts.Durable, 10*time.Second)
	held0 := b.Publish(t, k.Signup("cus_pk1", "u_pk1", "sub_pk1", "price_basic", processortest.T0)...)
	after := b.Publish(t, k.Signup("cus_pk2", "u_pk2", "sub_pk2", "price_basic", processortest.T0)...)
	s := b.Stream(t)
	var info *jetstream.StreamInfo
	wait.For(t, 10*time.Second, "everything but cus_pk1's events applied and purged below them", func() bool {
		var err error
		info, err = s.Info(t.Context())
		return err == nil && info.State.Msgs == uint64(held0+after) && processortest.Counter(in.Metrics.Outcomes.WithLabelValues("ack")) == float64(info.State.LastSeq)-float64(held0)
	})
	first, err := s.GetMsg(t.Context(), info.State.FirstSeq)
	require.NoError(t, err)
	ev, err := stripeevent.Parse(first.Data)
	require.NoError(t, err)
	require.Equal(t, "cus_pk1", ev.CustomerID, "the first message left is the held event")

	cons := in.Consumer.JsConsumer()
	ci, err := cons.Info(t.Context())
	require.NoError(t, err)
	oldest, err := ingest.OldestUnapplied(t.Context(), s, ci.AckFloor.Stream)
	require.NoError(t, err)
	require.Equal(t, first.Time, oldest)
	require.Positive(t, ingest.AgeAt(oldest, time.Now().Add(time.Minute)))

	// Applied at last: a consumer created again delivers what the stream holds at once.
	require.NoError(t, in.Stop())
	require.NoError(t, b.JS.DeleteConsumer(t.Context(), stream.Name, opts.Durable))
	in = b.Start(t, processortest.TestOptions(), b.DB.URL)
	wait.For(t, 10*time.Second, "the stream empties", func() bool {
		i, err := s.Info(t.Context())
		return err == nil && i.State.Msgs == 0
	})
	ci, err = in.Consumer.JsConsumer().Info(t.Context())
	require.NoError(t, err)
	oldest, err = ingest.OldestUnapplied(t.Context(), s, ci.AckFloor.Stream)
	require.NoError(t, err)
	require.Zero(t, ingest.AgeAt(oldest, time.Now()))
}
