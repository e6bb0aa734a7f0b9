package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/processortest"
	"github.com/tollgate/tollgate/processor/internal/reconcile"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// reconcileBundle is a read model in a fresh database and a fake Stripe with subscriptions.
type reconcileBundle struct {
	db   *pgtest.DB
	fake *stripetest.API
	env  map[string]string
}

func setupReconcile(t *testing.T) *reconcileBundle {
	t.Helper()
	db := pgtest.New(t)
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{Every500: 2})
	return &reconcileBundle{db: db, fake: fake, env: map[string]string{
		"DATABASE_URL": db.URL, "STRIPE_API_KEY": processortest.TestAPIKey, "STRIPE_API_BASE": fake.URL,
	}}
}

// readModel saves customer rows with subscriptions of the given statuses (id -> status).
func (b *reconcileBundle) readModel(t *testing.T, customers map[string]map[string]string) {
	t.Helper()
	var rows []entitlement.Customer
	for cus, subs := range customers {
		c := entitlement.Customer{CustomerID: cus, Status: "none", Features: []string{}, Subscriptions: []entitlement.Subscription{},
			LastEventID: "evt_" + cus, LastEventCreated: time.Unix(1_700_000_000, 0).UTC()}
		for id, status := range subs {
			c.Subscriptions = append(c.Subscriptions, entitlement.Subscription{ID: id, CustomerID: cus, Status: status,
				PriceIDs: []string{"price_pro"}, ProductIDs: []string{"prod_test"}})
			c.Status = status
		}
		rows = append(rows, c)
	}
	require.NoError(t, entitlement.SaveCustomers(context.Background(), b.db.Pool, rows))
}

func (b *reconcileBundle) stripe(t *testing.T, id, customer, status string) {
	t.Helper()
	b.fake.AddSubscription(t, stripetest.Subscription(id, customer, status, "price_pro"), time.Now().Unix())
}

func (b *reconcileBundle) reconcile(t *testing.T, args ...string) command {
	t.Helper()
	c := runCommand(t.Context(), b.env, append([]string{"reconcile"}, args...)...)
	t.Logf("processor reconcile %s: err=%v\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), c.err, c.stdout, c.stderr)
	return c
}

// tableRows are the rows of the drift table (after its header, up to the first empty line), each
// as its cells.
func tableRows(stdout string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(stdout, "\n")[1:] {
		if line == "" {
			break
		}
		rows = append(rows, strings.Fields(strings.ReplaceAll(line, reconcile.DriftUnknownToStripe, "unknown-to-Stripe")))
	}
	return rows
}

// Reconcile finds exactly the planted drift and changes nothing; exit status 2 with drift, 0 without.
func TestReconcileFindsThePlantedDrift(t *testing.T) {
	t.Parallel()
	b := setupReconcile(t)
	model := map[string]map[string]string{
		"cus_ok":      {"sub_ok": "active", "sub_ok_old": "canceled"},
		"cus_status":  {"sub_status": "active"},
		"cus_missing": {"sub_m1": "trialing"},
		"cus_unknown": {"sub_u": "past_due"},
	}
	for i := range 120 { // two pages of Stripe subscriptions, with a 500 in between
		cus := fmt.Sprintf("cus_fill_%03d", i)
		model[cus] = map[string]string{"sub_fill_" + cus: "active"}
		b.stripe(t, "sub_fill_"+cus, cus, "active")
	}
	b.readModel(t, model)
	b.stripe(t, "sub_ok", "cus_ok", "active")
	b.stripe(t, "sub_ok_old", "cus_ok", "canceled")
	b.stripe(t, "sub_status", "cus_status", "past_due")
	b.stripe(t, "sub_m1", "cus_missing", "trialing")
	b.stripe(t, "sub_m2", "cus_missing", "active")
	b.stripe(t, "sub_new", "cus_new", "active")     // a customer the read model never saw
	b.stripe(t, "sub_gone", "cus_gone", "canceled") // history of a customer before Tollgate: ignored
	b.stripe(t, "sub_exp", "cus_gone", "incomplete_expired")
	var before time.Time
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT max(updated_at) FROM customer_entitlements`).Scan(&before))

	c := b.reconcile(t)
	require.ErrorIs(t, c.err, reconcile.ErrDrift)
	require.Equal(t, 2, cli.ExitCode(c.err))
	require.ErrorContains(t, c.err, "drift found in 4 customers")
	require.True(t, strings.HasPrefix(c.stdout, "CUSTOMER"), c.stdout)
	require.Equal(t, [][]string{
		{"cus_missing", "sub_m2", "missing", "active", "-"},
		{"cus_new", "sub_new", "missing", "active", "-"},
		{"cus_status", "sub_status", "status", "past_due", "active"},
		{"cus_unknown", "sub_u", "unknown-to-Stripe", "-", "past_due"},
	}, tableRows(c.stdout))
	require.Contains(t, c.stdout, "Drift in 4 customers: 2 missing, 1 different status, 1 unknown to Stripe (compared the read model's 124 customers with Stripe's 128 subscriptions (status=all)).")
	require.Contains(t, c.stdout, "Left out: 2 ended subscriptions of customers the read model does not know")
	require.Contains(t, c.stdout, "Nothing was changed: the read model stays the operational truth")
	require.Contains(t, c.stdout, "The fix is a backfill")
	var after time.Time
	var rows int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT max(updated_at), count(*) FROM customer_entitlements`).Scan(&after, &rows))
	require.Equal(t, before, after, "nothing written")
	require.Equal(t, 124, rows)

	one := b.reconcile(t, "--customer", "cus_status")
	require.ErrorIs(t, one.err, reconcile.ErrDrift)
	require.Equal(t, [][]string{{"cus_status", "sub_status", "status", "past_due", "active"}}, tableRows(one.stdout))
	for _, r := range b.fake.Requests()[len(b.fake.Requests())-1:] {
		require.Equal(t, "cus_status", r.Query.Get("customer"))
		require.Equal(t, "all", r.Query.Get("status"))
	}
	fine := b.reconcile(t, "--customer", "cus_ok")
	require.NoError(t, fine.err)
	require.Equal(t, 0, cli.ExitCode(fine.err))
	require.Equal(t, "No drift: customer cus_ok matches Stripe's 2 subscriptions (status=all).\n", fine.stdout)

	// Once the events are in (here: the rows as the processor would derive them), no drift.
	b.readModel(t, map[string]map[string]string{
		"cus_status":  {"sub_status": "past_due"},
		"cus_missing": {"sub_m1": "trialing", "sub_m2": "active"},
		"cus_unknown": {},
		"cus_new":     {"sub_new": "active"},
	})
	clean := b.reconcile(t)
	require.NoError(t, clean.err)
	require.Equal(t, "No drift: the read model's 125 customers match Stripe's 128 subscriptions (status=all).\n"+
		"Left out: 2 ended subscriptions of customers the read model does not know (canceled or incomplete_expired, no access either way).\n", clean.stdout)
}

func TestReconcileFailsClearly(t *testing.T) {
	t.Parallel()
	b := setupReconcile(t)
	with := func(k, v string) map[string]string {
		env := map[string]string{}
		for k, v := range b.env {
			env[k] = v
		}
		env[k] = v
		return env
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no API key", with("STRIPE_API_KEY", ""), nil, "STRIPE_API_KEY is required"},
		{"not a postgres URL", with("DATABASE_URL", "mysql://db"), nil, "DATABASE_URL must be a postgres:// URL"},
		{"Postgres unreachable", with("DATABASE_URL", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"), nil, "DATABASE_URL"},
		{"wrong API key", with("STRIPE_API_KEY", "rk_test_wrong"), nil, "Invalid API Key provided"},
		{"positional argument", b.env, []string{"cus_1"}, "reconcile takes no positional arguments"},
		{"bad rate", b.env, []string{"--rate", "0"}, "--rate 0 must be above 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := runCommand(t.Context(), tt.env, append([]string{"reconcile"}, tt.args...)...)
			require.ErrorContains(t, c.err, tt.want)
			require.Equal(t, 1, cli.ExitCode(c.err), "an error is 1, not drift's 2")
			require.Empty(t, c.stdout)
		})
	}
}

// main exits with exitCode: reconcile's drift is 2, as a usage error is; any other failure is 1.
func TestExitCode(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, cli.ExitCode(nil))
	require.Equal(t, 2, cli.ExitCode(fmt.Errorf("reconcile: %w in 1 customer", reconcile.ErrDrift)))
	require.Equal(t, 2, cli.ExitCode(fmt.Errorf("%w: unknown command", cli.ErrUsage)))
	require.Equal(t, 1, cli.ExitCode(errors.New("anything else")))

	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"help"}, envOf(nil), &out, io.Discard))
	require.Contains(t, out.String(), "backfill ")
	require.Contains(t, out.String(), "reconcile ")
	require.Contains(t, out.String(), "BACKFILL_INTERVAL")
	c := runCommand(t.Context(), nil, "reconcile", "-h")
	require.NoError(t, c.err, "help is not a failure")
	require.Contains(t, c.stderr, "Usage: processor reconcile")
}
