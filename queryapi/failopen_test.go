package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// failOpenCLI runs `queryapi fail-open <arg>` against the database and returns its output.
func failOpenCLI(t *testing.T, databaseURL, arg string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"queryapi", "fail-open", arg}, getenv(map[string]string{"DATABASE_URL": databaseURL}), &stdout, &stderr)
	require.NoError(t, err)
	return stdout.String()
}

// followsWithin2s waits, with the contract's 2 s deadline, until the instance's answer for
// an unknown user has fail_open == on.
func followsWithin2s(t *testing.T, b *bundle, on bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		rec := b.get(t, "/v1/users/u_unknown/entitlement", testToken)
		if on {
			return rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), `"fail_open":true`)
		}
		return rec.Code == http.StatusNotFound
	}, 2*time.Second, 10*time.Millisecond, "instance did not follow fail-open=%v within 2 s", on)
}

func TestFailOpenAcrossInstances(t *testing.T) {
	t.Parallel()
	first := setup(t)
	second := startInstance(t, first.db, first.db.URL)
	save(t, first.db, premiumCustomer(), freeCustomer("cus_free", "u_free"))
	for _, b := range []*bundle{first, second} {
		b.get(t, "/v1/users/u_unknown/entitlement", testToken) // cache the 404s
		require.Equal(t, http.StatusNotFound, b.get(t, "/v1/users/u_unknown/entitlement", testToken).Code)
	}

	out := failOpenCLI(t, first.db.URL, "on")
	require.Contains(t, out, "fail-open is ON since ")
	for _, b := range []*bundle{first, second} {
		followsWithin2s(t, b, true)
	}
	require.Contains(t, failOpenCLI(t, first.db.URL, "status"), "fail-open is ON")

	t.Run("unknown user: minimal grant", func(t *testing.T) {
		m := second.getJSON(t, "/v1/users/u_unknown/entitlement", http.StatusOK)
		require.Equal(t, map[string]any{
			"user_id": "u_unknown", "customer_ids": []any{}, "livemode": false, "account": nil, "premium": true, "status": "none",
			"features": []any{"premium"}, "limits": map[string]any{}, "grants": []any{}, "subscriptions": []any{}, "last_event_id": nil,
			"last_event_created": nil, "updated_at": nil, "fail_open": true,
		}, m)
	})
	t.Run("unknown customer: minimal grant", func(t *testing.T) {
		m := second.getJSON(t, "/v1/customers/cus_unknown/entitlement", http.StatusOK)
		require.Nil(t, m["user_id"])
		require.Equal(t, []any{"cus_unknown"}, m["customer_ids"])
		require.Equal(t, true, m["premium"])
		require.Equal(t, true, m["fail_open"])
	})
	t.Run("known free user: real data, granted", func(t *testing.T) {
		m := first.getJSON(t, "/v1/users/u_free/entitlement", http.StatusOK)
		require.Equal(t, true, m["premium"])
		require.Equal(t, true, m["fail_open"])
		require.Equal(t, "none", m["status"], "the real status is kept")
		require.Equal(t, []any{"cus_free"}, m["customer_ids"])
		require.Equal(t, "evt_1", m["last_event_id"])
		require.Equal(t, []any{"premium"}, m["features"])
	})
	t.Run("known premium user: real data", func(t *testing.T) {
		m := first.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)
		require.Equal(t, true, m["premium"])
		require.Equal(t, true, m["fail_open"])
		require.Len(t, m["subscriptions"], 1)
	})
	t.Run("401 still applies", func(t *testing.T) {
		require.Equal(t, http.StatusUnauthorized, first.get(t, "/v1/users/u_42/entitlement", "").Code)
		require.Equal(t, http.StatusUnauthorized, first.get(t, "/v1/users/u_42/entitlement", "wrong").Code)
	})
	t.Run("readyz and metric show it", func(t *testing.T) {
		m := second.getJSON(t, "/readyz", http.StatusOK)
		require.Equal(t, true, m["fail_open"])
		requireUTC(t, m["fail_open_since"])
		v, ok := metricValue(t, second.reg, "tollgate_queryapi_fail_open", nil)
		require.True(t, ok)
		require.InDelta(t, 1.0, v, 0)
	})
	require.NotEmpty(t, second.logs.lines(t, "fail-open is ON"), "turning on is logged as a warning")

	out = failOpenCLI(t, first.db.URL, "off")
	require.Contains(t, out, "fail-open is off since ")
	for _, b := range []*bundle{first, second} {
		followsWithin2s(t, b, false)
	}
	m := first.getJSON(t, "/v1/users/u_free/entitlement", http.StatusOK)
	require.Equal(t, false, m["premium"])
	require.Equal(t, false, m["fail_open"])
	v, _ := metricValue(t, first.reg, "tollgate_queryapi_fail_open", nil)
	require.InDelta(t, 0.0, v, 0)
	require.Equal(t, false, second.getJSON(t, "/readyz", http.StatusOK)["fail_open"])
}

// Without notifications (trigger dropped) the poll alone follows within 2 s.
func TestFailOpenFollowedByPolling(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.db.Pool.Exec(context.Background(), `DROP TRIGGER switches_notify ON switches`)
	require.NoError(t, err)
	failOpenCLI(t, b.db.URL, "on")
	followsWithin2s(t, b, true)
	failOpenCLI(t, b.db.URL, "off")
	followsWithin2s(t, b, false)
}

func TestFailOpenWarnsWhileOn(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.warnEvery = 20 * time.Millisecond })
	failOpenCLI(t, b.db.URL, "on")
	require.Eventually(t, func() bool {
		return len(b.logs.lines(t, "fail-open is still ON")) >= 2
	}, 5*time.Second, 10*time.Millisecond)
	w := b.logs.lines(t, "fail-open is still ON")[0]
	require.Equal(t, "WARN", w["level"])
	require.Contains(t, w, "since")
}

// An instance that starts while the switch is on grants from its first request.
func TestFailOpenFromTheStart(t *testing.T) {
	t.Parallel()
	first := setup(t)
	failOpenCLI(t, first.db.URL, "on")
	late := startInstance(t, first.db, first.db.URL)
	m := late.getJSON(t, "/v1/users/u_unknown/entitlement", http.StatusOK)
	require.Equal(t, true, m["fail_open"])
}

// While on, a database that does not answer does not delay or deny the grant.
func TestFailOpenGrantsWhenTheDatabaseFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	failOpenCLI(t, b.db.URL, "on")
	followsWithin2s(t, b, true)
	// The read-model table disappears: every read fails from now on.
	_, err := b.db.Pool.Exec(context.Background(), `ALTER TABLE user_entitlements RENAME TO gone`)
	require.NoError(t, err)
	b.app.cache.flush()
	m := b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)
	require.Equal(t, true, m["premium"])
	require.Equal(t, true, m["fail_open"])
	require.Equal(t, "u_42", m["user_id"])
	require.NotEmpty(t, b.logs.lines(t, "read failed while fail-open is on"))
}

func TestFailOpenCommandErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no argument", []string{"queryapi", "fail-open"}, nil, "fail-open takes one of on, off, status"},
		{"bad argument", []string{"queryapi", "fail-open", "maybe"}, nil, "fail-open takes one of on, off, status"},
		{"bad url", []string{"queryapi", "fail-open", "status"}, map[string]string{"DATABASE_URL": "mysql://x"}, "DATABASE_URL must be a postgres:// URL"},
		{"unreachable", []string{"queryapi", "fail-open", "on"}, map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?connect_timeout=1"}, "connect to DATABASE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, getenv(tt.env), &stdout, &stderr)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// Turning on a switch that is already on keeps the time it went on.
func TestFailOpenOnTwiceKeepsSince(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first := failOpenCLI(t, b.db.URL, "on")
	again := failOpenCLI(t, b.db.URL, "on")
	since := func(s string) string { return strings.Fields(strings.SplitAfter(s, "since ")[1])[0] }
	require.Equal(t, since(first), since(again))
}
