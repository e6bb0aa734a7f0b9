package main

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/backfill"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// inScope moves events to a scope: their envelopes' livemode and account.
func kitInScope(k *processortest.Kit, sc scope.Scope, raws [][]byte) [][]byte {
	out := make([][]byte, len(raws))
	for i, raw := range raws {
		out[i] = k.Edit(raw, func(ev, obj map[string]any) {
			ev["livemode"] = sc.Livemode
			obj["livemode"] = sc.Livemode
			delete(ev, "account")
			if sc.Account != "" {
				ev["account"] = sc.Account
			}
		})
	}
	return out
}

var (
	testPlatform = scope.Scope{}                                   //nolint:gochecknoglobals // test fixture
	livePlatform = scope.Live()                                    //nolint:gochecknoglobals // test fixture
	liveAcctA    = scope.Scope{Livemode: true, Account: "acct_A1"} //nolint:gochecknoglobals // test fixture
	liveAcctB    = scope.Scope{Livemode: true, Account: "acct_B2"} //nolint:gochecknoglobals // test fixture
)

// scopedHistories is the same user id u_42 in four scopes, and the same customer id cus_X in test
// and live mode: premium in test mode and in acct_A1, canceled on the live platform, never paid in
// acct_B2.
func scopedHistories(k *processortest.Kit) [][]byte {
	var all [][]byte
	all = append(all, kitInScope(k, testPlatform, k.Signup("cus_X", "u_42", "sub_T", "price_pro", processortest.T0))...)
	live := k.Signup("cus_X", "u_42", "sub_L", "price_pro", processortest.T0+100)
	live = append(live, k.Subscription("customer.subscription.deleted", "cus_X", "sub_L", "canceled", "price_pro", processortest.T0+86400, nil))
	all = append(all, kitInScope(k, livePlatform, live)...)
	all = append(all, kitInScope(k, liveAcctA, k.Signup("cus_A", "u_42", "sub_A", "price_basic", processortest.T0+200))...)
	all = append(all, kitInScope(k, liveAcctB, [][]byte{k.CustomerCreated("cus_B", processortest.T0+300, "u_42")})...)
	// Unrelated population in test mode and in acct_A1, so that pages and batches mix scopes.
	all = append(all, k.Population(12)...)
	all = append(all, kitInScope(k, liveAcctA, k.Population(12))...)
	return all
}

func requireUser(t *testing.T, b *processortest.Bundle, k scope.Key, premium bool, customers ...string) {
	t.Helper()
	u, err := entitlement.GetUser(t.Context(), b.DB.Pool, k)
	require.NoError(t, err, "%s", k)
	require.Equal(t, premium, u.Premium, "%s", k)
	require.Equal(t, customers, u.CustomerIDs, "%s", k)
	require.Equal(t, k.Scope, u.Scope)
}

// Through the consumer (real JetStream and Postgres): mixed-scope events in any order, with
// duplicates, give each scope the read model of its own events alone (expect derives each scope's
// histories separately), and an event of one scope never changes another's answer.
func TestScopesNeverMix(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "s")
	all := scopedHistories(k)
	b.Start(t, processortest.TestOptions(), b.DB.URL)
	b.Publish(t, processortest.ShuffledWithDuplicates(7, all)...)
	want := processortest.Expect(t, b.Rules, all...)
	processortest.CaughtUp(t, b.DB.Pool, want, 20*time.Second)

	requireUser(t, b, testPlatform.Of("u_42"), true, "cus_X")
	requireUser(t, b, livePlatform.Of("u_42"), false, "cus_X")
	requireUser(t, b, liveAcctA.Of("u_42"), true, "cus_A")
	requireUser(t, b, liveAcctB.Of("u_42"), false, "cus_B")
	for _, k := range []scope.Key{liveAcctA.Of("cus_X"), scope.Scope{Account: "acct_A1"}.Of("u_42"), livePlatform.Of("cus_A")} {
		_, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, k)
		require.ErrorIs(t, err, entitlement.ErrNotFound, "%s", k)
	}
	x, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, testPlatform.Of("cus_X"))
	require.NoError(t, err)
	require.Len(t, x.Subscriptions, 1, "test mode's cus_X has only its own subscription")
	require.Equal(t, "sub_T", x.Subscriptions[0].ID)

	// A test-mode event for the same customer and user never touches the live answers.
	before := readModelOf(t, b, livePlatform, liveAcctA, liveAcctB)
	more := kitInScope(k, testPlatform, k.Signup("cus_X", "u_42", "sub_T2", "price_team", processortest.T0+5*86400))
	b.Publish(t, more...)
	all = append(all, more...)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, all...), 20*time.Second)
	require.Equal(t, before, readModelOf(t, b, livePlatform, liveAcctA, liveAcctB))
}

// readModelOf is the rows of the given scopes, as text.
func readModelOf(t *testing.T, b *processortest.Bundle, scopes ...scope.Scope) string {
	t.Helper()
	var out string
	for _, sc := range scopes {
		rows, err := entitlement.ListCustomers(t.Context(), b.DB.Pool, sc, "", 1000)
		require.NoError(t, err)
		for _, r := range rows {
			r.UpdatedAt = time.Time{}
			out += sc.String() + " " + r.CustomerID + " " + r.UserID + " " + r.Status + " " + r.LastEventID + "\n"
		}
	}
	return out
}

// The property over mixed scopes, without the queue: any order and any duplicates of the events
// of several scopes, applied in batches, give every scope the answer of its own events alone.
func TestMixedScopeEventsInAnyOrderProperty(t *testing.T) {
	t.Parallel()
	k := processortest.NewKit(t, "p")
	all := scopedHistories(k)
	for seed := range uint64(4) {
		b := processortest.Setup(t)
		events := processortest.ShuffledWithDuplicates(100+seed, all)
		for len(events) > 0 { // batches of varied size, as the consumer forms them
			n := min(len(events), 1+int(seed)*7)
			bundleApplyAll(b, t, events[:n]...)
			events = events[n:]
		}
		processortest.RequireReadModel(t, b.DB.Pool, processortest.Expect(t, b.Rules, all...))
	}
}

// replay --all and --customer re-derive every scope from its own stored history.
func TestReplayPerScope(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "q")
	all := scopedHistories(k)
	bundleApplyAll(b, t, all...)
	want := processortest.Expect(t, b.Rules, all...)
	processortest.RequireReadModel(t, b.DB.Pool, want)

	_, err := b.DB.Pool.Exec(t.Context(), `DELETE FROM customer_entitlements; DELETE FROM user_entitlements`)
	require.NoError(t, err)
	n, _ := replayCmdOut(t, map[string]string{"DATABASE_URL": b.DB.URL}, "--all")
	require.Equal(t, len(want.Customers), n, "every scope's customers derived again")
	processortest.RequireReadModel(t, b.DB.Pool, want)

	_, err = b.DB.Pool.Exec(t.Context(), `UPDATE customer_entitlements SET status = 'unpaid' WHERE customer_id = 'cus_X'`)
	require.NoError(t, err)
	n, _ = replayCmdOut(t, map[string]string{"DATABASE_URL": b.DB.URL}, "--customer", "cus_X")
	require.Equal(t, 2, n, "cus_X in test and in live mode")
	processortest.RequireReadModel(t, b.DB.Pool, want)
}

// backfill --account lists a connected account's events (Stripe-Account) and stores them in the
// account's scope, even when the listing does not say the account; the platform's backfill
// leaves them alone.
func TestBackfillPerScope(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{})
	now := time.Now().Unix() - 3600
	platform := stripetest.Event{ID: "evt_bf_platform", Type: "customer.subscription.updated", Created: now,
		Object: stripetest.Subscription("sub_bf_p", "cus_bf", "active", "price_pro")}.JSON(t)
	acct := stripetest.Event{ID: "evt_bf_acct", Type: "customer.subscription.updated", Created: now,
		Object: stripetest.Subscription("sub_bf_a", "cus_bf", "active", "price_pro")}.JSON(t) // no "account": as listed
	b.fake.AddEvent(t, platform, false)
	b.fake.AddAccountEvent(t, "acct_BF1", acct, false)

	c := b.backfill(t, t.Context(), "--account", "acct_BF1")
	require.NoError(t, c.err)
	require.Equal(t, backfill.Counts{Listed: 1, New: 1}, summaryCounts(t, c.stdout))
	for _, r := range b.fake.Requests() {
		require.Equal(t, "acct_BF1", r.Account, "every request names the account")
	}
	c = b.backfill(t, t.Context())
	require.NoError(t, c.err)
	require.Equal(t, backfill.Counts{Listed: 1, New: 1}, summaryCounts(t, c.stdout), "the platform's own list")

	b.Start(t, processortest.TestOptions(), b.DB.URL)
	b.Drained(t, processortest.TestOptions().Durable, 20*time.Second)
	for _, k := range []scope.Key{testPlatform.Of("cus_bf"), scope.Scope{Account: "acct_BF1"}.Of("cus_bf")} {
		got, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, k)
		require.NoError(t, err, "%s", k)
		require.Len(t, got.Subscriptions, 1, "%s", k)
	}
	a, err := entitlement.GetCustomer(t.Context(), b.DB.Pool, scope.Scope{Account: "acct_BF1"}.Of("cus_bf"))
	require.NoError(t, err)
	require.Equal(t, "sub_bf_a", a.Subscriptions[0].ID)

	c = b.backfill(t, t.Context(), "--account", "cus_nope")
	require.ErrorContains(t, c.err, "--account")
}

// reconcile compares the read model of the key's mode and the --account named only.
func TestReconcilePerScope(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{})
	k := processortest.NewKit(t, "rc")
	bundleApplyAll(b.Bundle, t, kitInScope(k, liveAcctA, k.Signup("cus_rc", "u_rc", "sub_rc", "price_pro", processortest.T0))...) // live: not the test key's
	bundleApplyAll(b.Bundle, t, kitInScope(k, scope.Scope{Account: "acct_A1"}, k.Signup("cus_rc", "u_rc", "sub_rc", "price_pro", processortest.T0))...)
	b.fake.AddSubscription(t, stripetest.Subscription("sub_other", "cus_other", "canceled", "price_pro"), processortest.T0)
	sub := stripetest.Subscription("sub_rc", "cus_rc", "active", "price_pro")
	// The platform's test mode has no rows and Stripe lists only a canceled one: no drift.
	c := runCommand(t.Context(), b.env, "reconcile")
	require.NoError(t, c.err, c.stdout+c.stderr)
	// acct_A1 in test mode: Stripe's list for the account matches its read model.
	b.fake.AddSubscriptionFor(t, "acct_A1", sub, processortest.T0)
	c = runCommand(t.Context(), b.env, "reconcile", "--account", "acct_A1")
	require.NoError(t, c.err, c.stdout+c.stderr)
	require.Contains(t, c.stdout, "No drift")
	require.Contains(t, c.stderr, "test acct_A1")
}
