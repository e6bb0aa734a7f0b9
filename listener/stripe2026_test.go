package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// Every API version from 2014 to 2026-11-18.endive, Accounts v2 customers and thin events
// through the real listener and the real processor, with a fake Stripe API for the repairs:
// each version's signup is applied, and a thin event's object is read from the API and applied.
func TestPipelineEveryAPIVersionAndThinEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := pgtest.NewEmpty(t)
	const key = "rk_test_stripe2026"
	fake := stripetest.NewAPI(t, key, stripetest.Faults{})
	runProcessorBinary(t, b.nats.URL(), db.URL, "STRIPE_API_KEY="+key, "STRIPE_API_BASE="+fake.URL)

	periodEnd := time.Now().Add(30 * 24 * time.Hour).Unix()
	at := time.Now().Add(-time.Hour).Unix()
	deliver := func(version, typ string, obj map[string]any) {
		at++
		raw := stripetest.Event{ID: fmt.Sprintf("evt_v_%d", at), Type: typ, Created: at, APIVersion: version, Object: obj}.JSON(t)
		resp := stripetest.Deliver(t, b.url, raw, testSecret)
		require.Equal(t, http.StatusOK, resp.Status, "%s %s: %s", version, typ, resp.Body)
	}
	want := map[string]string{} // customer -> user
	for i, version := range stripetest.APIVersions() {
		owners := [][2]string{{fmt.Sprintf("cus_v%d", i), ""}}
		if stripetest.AccountsV2(version) {
			owners = append(owners, [2]string{"", fmt.Sprintf("acct_1V%d", i)}) // Accounts v2: customer null
		}
		for _, o := range owners {
			owner, sub, user := o[0]+o[1], "sub_v_"+o[0]+o[1], "u_"+o[0]+o[1]
			deliver(version, "checkout.session.completed", stripetest.CheckoutIn(version, "cs_v_"+owner, o[0], o[1], user, sub))
			deliver(version, "customer.subscription.created", stripetest.SubscriptionIn(version, sub, o[0], o[1], "incomplete", "price_pro", periodEnd))
			deliver(version, "customer.subscription.updated", stripetest.SubscriptionIn(version, sub, o[0], o[1], "active", "price_pro", periodEnd))
			want[owner] = user
		}
	}

	// Stripe failed to create the events of sub_1SThinGenFail0001, and says so in a thin event;
	// Stripe's current state is the only source.
	thinSub := stripetest.SubscriptionIn("2023-10-16", "sub_1SThinGenFail0001", "cus_thin", "", "active", "price_pro", periodEnd)
	fake.AddSubscription(t, thinSub, at)
	fake.AddCustomer(t, map[string]any{"id": "cus_thin", "object": "customer", "metadata": map[string]any{"user_id": "u_thin"}})
	// The notification names no object; the event behind it does, in data.impact.related_object.
	fake.AddV2Event(t, stripetest.Fixture(t, "v2/v2.core.health.event_generation_failure.resolved.event.json"))
	thin := stripetest.Fixture(t, "v2/v2.core.health.event_generation_failure.resolved.json")
	thin = []byte(strings.Replace(string(thin), "2026-11-20T09:14:27.412Z", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), 1))
	resp := stripetest.Deliver(t, b.url, thin, testSecret)
	require.Equal(t, http.StatusOK, resp.Status, "a thin event is taken: %s", resp.Body)
	want["cus_thin"] = "u_thin"

	wait.For(t, 90*time.Second, "every version's customer and the repaired one are active with their user", func() bool {
		for cus, user := range want {
			got, err := entitlement.GetCustomer(t.Context(), db.Pool, scope.Key{ID: cus})
			if err != nil || got.Status != "active" || got.UserID != user {
				return false
			}
		}
		return true
	})
	var deadLetters, open int
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM dead_letters`).Scan(&deadLetters))
	require.Zero(t, deadLetters)
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pending_repairs WHERE done_at IS NULL`).Scan(&open))
	require.Zero(t, open)
}

// The shapes of 2026-09-30.endive and later through the real listener and the real processor:
// a pause on demand and the automatic pauses (after a failed payment, after a trial without a
// payment method) and a Trial Offer, each history shuffled with a duplicate. The histories are
// the pure core's (pkg/subscription/testdata/endive), each given ids of its own here.
func TestPipelineEndivePausesAndTrialOffers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := pgtest.NewEmpty(t)
	runProcessorBinary(t, b.nats.URL(), db.URL)

	want := map[string]string{ // history -> the customer's status after all of it
		"pause_on_demand":                          "active",
		"pause_after_failed_payment":               "paused",
		"pause_after_trial_without_payment_method": "active",
		"trial_offer":                              "active",
	}
	customers := map[string]string{} // customer -> status
	i := 0
	for name, status := range want {
		i++
		data, err := os.ReadFile(filepath.Join("..", "pkg", "subscription", "testdata", "endive", name+".json"))
		require.NoError(t, err)
		// Every id of a history names TEndive: a tag per history keeps the four apart.
		data = []byte(strings.ReplaceAll(string(data), "TEndive", fmt.Sprintf("TEndive%dx", i)))
		var events []json.RawMessage
		require.NoError(t, json.Unmarshal(data, &events))
		events = append(events, events[len(events)/2]) // a duplicate
		rand.Shuffle(len(events), func(a, b int) { events[a], events[b] = events[b], events[a] })
		for _, e := range events {
			resp := stripetest.Deliver(t, b.url, e, testSecret)
			require.Equal(t, http.StatusOK, resp.Status, "%s: %s", name, resp.Body)
		}
		customers[fmt.Sprintf("cus_TEndive%dx0001", i)] = status
	}
	wait.For(t, 60*time.Second, "every endive history's customer has its final status", func() bool {
		for cus, status := range customers {
			got, err := entitlement.GetCustomer(t.Context(), db.Pool, scope.Key{ID: cus})
			if err != nil || got.Status != status || got.Premium != (status != "paused") {
				return false
			}
		}
		return true
	})
	var deadLetters int
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM dead_letters`).Scan(&deadLetters))
	require.Zero(t, deadLetters)
}
