package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/backfill"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/syncbuf"
)

// backfillBundle is the processor's test world (JetStream with the stream, a fresh database) and
// a fake Stripe API, with the environment `processor backfill` needs to reach all three.
type backfillBundle struct {
	*processortest.Bundle
	fake *stripetest.API
	env  map[string]string
}

func setupBackfill(t *testing.T, faults stripetest.Faults) *backfillBundle {
	t.Helper()
	b := processortest.Setup(t)
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, faults)
	return &backfillBundle{Bundle: b, fake: fake, env: map[string]string{
		"NATS_URL": b.Nats.URL(), "DATABASE_URL": b.DB.URL, "STRIPE_API_KEY": processortest.TestAPIKey, "STRIPE_API_BASE": fake.URL,
	}}
}

// command is the outcome of one `processor …` command run through run().
type command struct {
	stdout, stderr string
	err            error
}

// runCommand runs `processor args…` with env, as main does, until it returns.
func runCommand(ctx context.Context, env map[string]string, args ...string) command {
	var stdout, stderr syncbuf.Buffer
	err := run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr)
	return command{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

func (b *backfillBundle) backfill(t *testing.T, ctx context.Context, args ...string) command {
	t.Helper()
	c := runCommand(ctx, b.env, append([]string{"backfill"}, args...)...)
	t.Logf("processor backfill %s: err=%v\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), c.err, c.stdout, c.stderr)
	return c
}

// summaryCounts reads the counts line of a backfill's summary.
func summaryCounts(t *testing.T, stdout string) backfill.Counts {
	t.Helper()
	m := regexp.MustCompile(`(\d+) events listed: (\d+) new, (\d+) already had, (\d+) skipped`).FindStringSubmatch(stdout)
	require.NotNil(t, m, "no summary in %q", stdout)
	n := func(s string) int {
		v, err := strconv.Atoi(s)
		require.NoError(t, err)
		return v
	}
	return backfill.Counts{Listed: n(m[1]), New: n(m[2]), AlreadyHad: n(m[3]), Skipped: n(m[4])}
}

// checkpoints reads every checkpoint in backfill_state.
func bundleCheckpoints(b *processortest.Bundle, t *testing.T) map[string]backfill.Checkpoint {
	t.Helper()
	rows, err := b.DB.Pool.Query(t.Context(), `SELECT key, state FROM backfill_state WHERE key LIKE 'checkpoint.%'`)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]backfill.Checkpoint{}
	for rows.Next() {
		var k string
		var state []byte
		require.NoError(t, rows.Scan(&k, &state))
		var cp backfill.Checkpoint
		require.NoError(t, json.Unmarshal(state, &cp))
		out[k] = cp
	}
	require.NoError(t, rows.Err())
	return out
}

// After missed webhooks, a backfill brings exactly the missing events into the stream, through
// 429s and 500s; a second one changes nothing.
func TestBackfillRecoversMissedWebhooks(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{Every429: 3, Every500: 5, RetryAfter: 1})
	delivered := func(i int) bool { return i%3 == 0 }
	ids, raws := processortest.AddEvents(t, b.fake, "miss", 250, delivered)
	var webhooks int
	for i, raw := range raws {
		if delivered(len(raws) - 1 - i) {
			b.Webhook(t, raw)
			webhooks++
		}
	}
	require.Equal(t, uint64(webhooks), b.MsgCount(t))

	first := b.backfill(t, t.Context())
	require.NoError(t, first.err)
	require.Equal(t, backfill.Counts{Listed: 250, New: 250 - webhooks, AlreadyHad: webhooks}, summaryCounts(t, first.stdout))
	require.Contains(t, first.stdout, `"already had" means the event store holds the event (at any age), or it was received`)
	got := b.StreamIDs(t)
	require.Len(t, got, 250, "each event once")
	require.ElementsMatch(t, ids, got)
	require.Contains(t, first.stderr, "429 (attempt 1 of 6); retrying in 1s", "Retry-After honoured")
	require.Empty(t, bundleCheckpoints(b.Bundle, t), "a complete run deletes its checkpoint")

	second := b.backfill(t, t.Context())
	require.NoError(t, second.err)
	require.Equal(t, backfill.Counts{Listed: 250, AlreadyHad: 250}, summaryCounts(t, second.stdout))
	require.Equal(t, got, b.StreamIDs(t), "nothing changed")

	var faults, ok int
	for _, r := range b.fake.Requests() {
		switch r.Status {
		case http.StatusOK:
			ok++
			gte, err := strconv.ParseInt(r.Query.Get("created[gte]"), 10, 64)
			require.NoError(t, err)
			lte, err := strconv.ParseInt(r.Query.Get("created[lte]"), 10, 64)
			require.NoError(t, err)
			require.InDelta(t, float64(72*3600), float64(lte-gte), 1, "--since defaults to 72h")
			require.InDelta(t, float64(time.Now().Unix()), float64(lte), 60)
			require.False(t, r.Query.Has("delivery_success"))
		case http.StatusTooManyRequests, http.StatusInternalServerError:
			faults++
		default:
			t.Fatalf("unexpected answer %d to %v", r.Status, r.Query)
		}
	}
	require.Equal(t, 6, ok, "3 pages a run")
	require.Positive(t, faults)
}

func TestBackfillFilters(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{})
	ids, _ := processortest.AddEvents(t, b.fake, "filter", 40, func(i int) bool { return i%2 == 0 })
	var want []string
	for i, id := range ids {
		n := len(ids) - 1 - i
		if n%2 == 1 && n%4 != 3 && n >= 10 { // undelivered, subscription event, created within the last 90.5 minutes
			want = append(want, id)
		}
	}

	c := b.backfill(t, t.Context(), "--since", "5430s", "--undelivered", "--types", "customer.subscription.updated,customer.subscription.deleted")
	require.NoError(t, c.err)
	require.Equal(t, backfill.Counts{Listed: len(want), New: len(want)}, summaryCounts(t, c.stdout))
	require.ElementsMatch(t, want, b.StreamIDs(t))
	require.Contains(t, c.stdout, "undelivered only, types customer.subscription.updated,customer.subscription.deleted")
	reqs := b.fake.Requests()
	require.Len(t, reqs, 1)
	q := reqs[0].Query
	require.Equal(t, "false", q.Get("delivery_success"))
	require.Equal(t, []string{"customer.subscription.updated"}, q["types[0]"])
	require.Equal(t, []string{"customer.subscription.deleted"}, q["types[1]"])
	gte, err := strconv.ParseInt(q.Get("created[gte]"), 10, 64)
	require.NoError(t, err)
	require.InDelta(t, float64(time.Now().Add(-5430*time.Second).Unix()), float64(gte), 60)
}

// A backfill interrupted mid-page (Ctrl-C) keeps a checkpoint; the same command resumes it after
// the last event stored, within the same created bounds: nothing is missed or published twice.
func TestBackfillResumesAfterInterrupt(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{Every500: 4})
	ids, _ := processortest.AddEvents(t, b.fake, "resume", 230, func(int) bool { return false })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var seen atomic.Int64
	nc := b.JS.Conn()
	sub, err := nc.Subscribe(stream.AllSubjects, func(*nats.Msg) {
		if seen.Add(1) == 120 {
			cancel() // Ctrl-C in the middle of the second page
		}
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush(), "subscribed before the backfill publishes")
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	first := b.backfill(t, ctx)
	require.ErrorContains(t, first.err, "backfill interrupted after")
	require.ErrorContains(t, first.err, "the checkpoint is kept: run the same command again to resume")
	stored := b.StreamIDs(t)
	require.GreaterOrEqual(t, len(stored), 120)
	require.Less(t, len(stored), 230, "stopped before the end")
	require.Equal(t, ids[:len(stored)], stored, "newest first, in listing order")
	cps := bundleCheckpoints(b.Bundle, t)
	require.Len(t, cps, 1)
	var cp backfill.Checkpoint
	for _, c := range cps {
		cp = c
	}
	require.Equal(t, stored[len(stored)-1], cp.StartingAfter, "the cursor is the last event stored")
	require.Equal(t, backfill.Counts{Listed: len(stored), New: len(stored)}, cp.Counts)
	require.Equal(t, "since=72h undelivered=false types= scope=test", cp.Params)

	// An event that arrives in Stripe meanwhile is newer than the run's fixed upper bound.
	b.fake.AddEvent(t, stripetest.Event{ID: "evt_after_interrupt", Type: "customer.updated", Created: time.Now().Unix() + 5}.JSON(t), false)

	second := b.backfill(t, t.Context())
	require.NoError(t, second.err)
	require.Contains(t, second.stderr, fmt.Sprintf("after event %q", cp.StartingAfter))
	require.Equal(t, backfill.Counts{Listed: 230, New: 230}, summaryCounts(t, second.stdout), "no event twice (none already had)")
	all := b.StreamIDs(t)
	require.Equal(t, ids, all, "none missed, none twice, in listing order")
	require.NotContains(t, all, "evt_after_interrupt", "the resumed listing kept its upper bound")
	require.Empty(t, bundleCheckpoints(b.Bundle, t))

	var bounds []string
	for _, r := range b.fake.Requests() {
		if r.Status == http.StatusOK {
			bounds = append(bounds, r.Query.Get("created[gte]")+".."+r.Query.Get("created[lte]"))
		}
	}
	require.Len(t, slices.Compact(bounds), 1, "every page of both runs has the same created bounds")
}

// Stripe failing mid-listing stops the backfill with a clear message and keeps the checkpoint;
// the same command later resumes it.
func TestBackfillStripeFailureKeepsTheCheckpoint(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{DownAfter: 1, DownStatus: http.StatusUnauthorized})
	ids, raws := processortest.AddEvents(t, b.fake, "outage", 150, func(int) bool { return false })

	first := b.backfill(t, t.Context())
	require.ErrorContains(t, first.err, "backfill stopped after 100 events listed: 100 new")
	require.ErrorContains(t, first.err, "the checkpoint is kept: run the same command again to resume")
	require.ErrorContains(t, first.err, "This API key was revoked")
	require.Equal(t, 1, cli.ExitCode(first.err))
	require.Equal(t, ids[:100], b.StreamIDs(t))

	working := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{})
	for i := len(raws) - 1; i >= 0; i-- { // the same account: oldest first, as they were added
		working.AddEvent(t, raws[i], false)
	}
	b.env["STRIPE_API_BASE"] = working.URL
	second := b.backfill(t, t.Context())
	require.NoError(t, second.err)
	require.Equal(t, backfill.Counts{Listed: 150, New: 150}, summaryCounts(t, second.stdout))
	require.Equal(t, ids, b.StreamIDs(t))
	reqs := working.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, ids[99], reqs[0].Query.Get("starting_after"))
}

// --restart ignores a checkpoint; other flags have their own checkpoint.
func TestBackfillCheckpointKey(t *testing.T) {
	t.Parallel()
	k1, p1 := backfill.CheckpointKey(scope.Scope{}, 72*time.Hour, false, []string{"b", "a", "a"})
	k2, _ := backfill.CheckpointKey(scope.Scope{}, 72*time.Hour, false, []string{"a", "b"})
	k3, _ := backfill.CheckpointKey(scope.Scope{}, 72*time.Hour, true, []string{"a", "b"})
	k4, _ := backfill.CheckpointKey(scope.Scope{}, 48*time.Hour, false, []string{"a", "b"})
	require.Equal(t, k1, k2)
	require.NotEqual(t, k1, k3)
	require.NotEqual(t, k1, k4)
	require.Equal(t, "since=72h undelivered=false types=a,b scope=test", p1)
	require.Regexp(t, `^checkpoint\.[0-9a-f]{16}$`, k1)

	b := setupBackfill(t, stripetest.Faults{})
	ids, _ := processortest.AddEvents(t, b.fake, "restart", 5, func(int) bool { return false })
	store := &backfill.StateStore{DB: b.DB.Pool}
	key, params := backfill.CheckpointKey(scope.Scope{}, 24*time.Hour, false, nil)
	now := time.Now().UTC()
	stale := backfill.Checkpoint{Params: params, CreatedGTE: now.Add(-24 * time.Hour).Unix(), CreatedLTE: now.Unix(), StartingAfter: ids[2],
		Counts: backfill.Counts{Listed: 3, New: 3}, StartedAt: now}
	require.NoError(t, store.SaveCheckpoint(t.Context(), key, stale))

	c := b.backfill(t, t.Context(), "--since", "1d", "--restart")
	require.NoError(t, c.err)
	require.Contains(t, c.stderr, "--restart: dropping the checkpoint")
	require.Equal(t, backfill.Counts{Listed: 5, New: 5}, summaryCounts(t, c.stdout))
	require.Empty(t, bundleCheckpoints(b.Bundle, t))
}

func TestBackfillFailsClearly(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{})
	processortest.AddEvents(t, b.fake, "fail", 3, func(int) bool { return false })
	with := func(k, v string) map[string]string {
		env := map[string]string{}
		for k, v := range b.env {
			env[k] = v
		}
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
		return env
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no API key", with("STRIPE_API_KEY", ""), nil, "STRIPE_API_KEY is required"},
		{"bad API base", with("STRIPE_API_BASE", "localhost"), nil, "STRIPE_API_BASE"},
		{"wrong API key", with("STRIPE_API_KEY", "rk_test_wrong"), nil, "Invalid API Key provided"},
		{"NATS down", with("NATS_URL", "nats://127.0.0.1:1"), nil, "NATS_URL nats://127.0.0.1:1"},
		{"not a postgres URL", with("DATABASE_URL", "mysql://db"), nil, "DATABASE_URL must be a postgres:// URL"},
		{"Postgres unreachable", with("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"), nil, "DATABASE_URL"},
		{"more than 30 days", b.env, []string{"--since", "31d"}, "--since 744h reaches further back than Stripe keeps events (30 days, 720h)"},
		{"not a duration", b.env, []string{"--since", "a while"}, `"a while" is not a duration`},
		{"zero since", b.env, []string{"--since", "0s"}, "must be positive"},
		{"too many types", b.env, []string{"--types", strings.Repeat("customer.updated,", 21)}, "--types lists 21 event types; Stripe filters on at most 20"},
		{"rate over Stripe's limit", b.env, []string{"--rate", "500"}, "--rate 500 must be above 0 and at most 100"},
		{"positional argument", b.env, []string{"72h"}, "backfill takes no positional arguments"},
		{"unknown flag", b.env, []string{"--all"}, "flag provided but not defined: -all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := runCommand(t.Context(), tt.env, append([]string{"backfill"}, tt.args...)...)
			require.ErrorContains(t, c.err, tt.want)
			require.Equal(t, 1, cli.ExitCode(c.err))
			require.Empty(t, c.stdout)
		})
	}
	require.Zero(t, b.MsgCount(t))

	c := runCommand(t.Context(), b.env, "backfill", "-h")
	require.NoError(t, c.err, "help is not a failure")
	require.Contains(t, c.stderr, "Usage: processor backfill")
}

// Items that are not Stripe events, or too large for NATS, are skipped as the webhook refuses
// them; the others are stored.
func TestBackfillSkipsWhatTheWebhookRefuses(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{})
	ids, _ := processortest.AddEvents(t, b.fake, "skip", 3, func(int) bool { return false })
	created := time.Now().Add(-30 * time.Minute).Unix()
	b.fake.AddEvent(t, []byte(fmt.Sprintf(`{"id":"evt_no_type","object":"event","created":%d,"data":{"object":{"id":"cus_1","object":"customer"}}}`, created)), false)
	b.fake.AddEvent(t, stripetest.Event{ID: "evt_huge", Type: "customer.updated", Created: created - 1, Pad: 2 << 20}.JSON(t), false)

	c := b.backfill(t, t.Context())
	require.NoError(t, c.err)
	require.Equal(t, backfill.Counts{Listed: 5, New: 3, Skipped: 2}, summaryCounts(t, c.stdout))
	require.Contains(t, c.stderr, "warning: skipped an item of the list that is not a Stripe event")
	require.Contains(t, c.stderr, "warning: skipped event evt_huge (customer.updated): larger than the NATS server's max_payload")
	require.ElementsMatch(t, ids, b.StreamIDs(t))
}

// "Not yet received" is the event store's answer at any age, not JetStream's duplicate window:
// events received long ago (stored, gone from the stream, far past the 72 h window) are not
// published again; only those the store lacks go to the stream, and the consumer applies them.
func TestBackfillAsksTheEventStoreAtAnyAge(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{})
	tenDaysAgo := time.Now().Add(-10 * 24 * time.Hour).Unix()
	var received []stripeevent.Event
	var want []string
	for i := range 120 { // more than a page: the store is asked page by page
		raw := stripetest.Event{ID: fmt.Sprintf("evt_age_%03d", i), Type: "customer.subscription.updated", Created: tenDaysAgo + int64(i),
			Object: stripetest.Subscription(fmt.Sprintf("sub_age_%03d", i), fmt.Sprintf("cus_age_%03d", i), "active", "price_pro")}.JSON(t)
		b.fake.AddEvent(t, raw, i%3 != 0)
		if i%3 != 0 { // delivered ten days ago: in the event store, no longer in the stream
			ev, err := stripeevent.Parse(raw)
			require.NoError(t, err)
			received = append(received, ev)
		} else {
			want = append(want, fmt.Sprintf("evt_age_%03d", i))
		}
	}
	_, err := eventstore.Append(t.Context(), b.DB.Pool, received)
	require.NoError(t, err)

	c := b.backfill(t, t.Context(), "--since", "30d")
	require.NoError(t, c.err)
	require.Equal(t, backfill.Counts{Listed: 120, New: len(want), AlreadyHad: len(received)}, summaryCounts(t, c.stdout))
	require.ElementsMatch(t, want, b.StreamIDs(t), "only the events never received are published")

	b.Start(t, processortest.TestOptions(), b.DB.URL)
	b.Drained(t, processortest.TestOptions().Durable, 20*time.Second)
	require.Equal(t, 120, processortest.StoredEvents(t, b.DB.Pool), "the consumer applied them: one apply path")

	published := b.MsgCount(t)
	again := b.backfill(t, t.Context(), "--since", "30d")
	require.NoError(t, again.err)
	require.Equal(t, backfill.Counts{Listed: 120, AlreadyHad: 120}, summaryCounts(t, again.stdout))
	require.Equal(t, published, b.MsgCount(t), "nothing published again")
}
