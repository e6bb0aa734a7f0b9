package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
)

func TestAuthorization(t *testing.T) {
	t.Parallel()
	b := setup(t)
	save(t, b.db, premiumCustomer())
	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"prefix of a token", "Bearer test-token", http.StatusUnauthorized},
		{"token plus more", "Bearer test-token-1x", http.StatusUnauthorized},
		{"not bearer", "Basic " + testToken, http.StatusUnauthorized},
		{"scheme only", "Bearer ", http.StatusUnauthorized},
		{"first token", "Bearer other-token", http.StatusOK},
		{"second token", "Bearer " + testToken, http.StatusOK},
		{"scheme is case-insensitive", "bearer " + testToken, http.StatusOK},
	}
	for _, path := range []string{"/v1/users/u_42/entitlement", "/v1/customers/cus_123/entitlement", "/v1/users/unknown/entitlement", "/v1/nothing"} {
		for _, tt := range tests {
			if tt.want == http.StatusOK && !strings.Contains(path, "42") && !strings.Contains(path, "123") {
				continue
			}
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, path, nil)
				require.NoError(t, err)
				if tt.header != "" {
					req.Header.Set("Authorization", tt.header)
				}
				rec := serveRequest(b.srv, req)
				require.Equal(t, tt.want, rec.Code, rec.Body.String())
				if tt.want == http.StatusUnauthorized {
					require.JSONEq(t, `{"error":{"code":"unauthorized","message":"a valid Authorization: Bearer token is required"}}`, rec.Body.String())
					require.Equal(t, `Bearer realm="tollgate"`, rec.Header().Get("WWW-Authenticate"))
				}
			})
		}
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/v1/users/u_nobody/entitlement", "/v1/customers/cus_nobody/entitlement"} {
		rec := b.get(t, path, testToken)
		require.Equal(t, http.StatusNotFound, rec.Code)
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		require.JSONEq(t, `{"error":{"code":"not_found","message":"no entitlement is known for this id"}}`, rec.Body.String())
	}
	rec := b.get(t, "/v1/users/u_1/nothing", testToken)
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.JSONEq(t, `{"error":{"code":"not_found","message":"no such route"}}`, rec.Body.String())
}

// TestUserAnswerShape checks the 200 body field by field against the contract: exact keys, JSON
// types, RFC 3339 UTC times, nulls for absent values, [] for empty lists.
func TestUserAnswerShape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// A second customer of the same user, created in another zone: the answer is still UTC.
	paris := time.FixedZone("CET", 3600)
	trialEnd := time.Date(2026, 12, 1, 11, 0, 0, 0, paris)
	second := freeCustomer("cus_200", "u_42")
	second.Subscriptions = []entitlement.Subscription{{ID: "sub_2", CustomerID: "cus_200", Status: "canceled",
		PriceIDs: nil, ProductIDs: []string{"prod_2"}, TrialEnd: &trialEnd, CancelAtPeriodEnd: true}}
	second.Status = "canceled"
	save(t, b.db, premiumCustomer(), second)

	m := b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)
	require.ElementsMatch(t, []string{"user_id", "customer_ids", "livemode", "account", "premium", "status", "features", "limits", "grants",
		"subscriptions", "last_event_id", "last_event_created", "updated_at", "fail_open"}, keys(m))
	require.Equal(t, map[string]any{}, m["limits"], "{} when nothing gives a limit")
	require.Equal(t, []any{}, m["grants"])
	require.Equal(t, false, m["livemode"], "the scope asked (this server's default: test mode)")
	require.Nil(t, m["account"], "null for the platform")
	require.Equal(t, "u_42", m["user_id"])
	require.Equal(t, []any{"cus_123", "cus_200"}, m["customer_ids"])
	require.Equal(t, true, m["premium"])
	require.Equal(t, "active", m["status"])
	require.Equal(t, []any{"premium"}, m["features"])
	require.Equal(t, "evt_9", m["last_event_id"])
	require.Equal(t, "2026-11-22T10:00:00Z", m["last_event_created"])
	requireUTC(t, m["updated_at"])
	require.Equal(t, false, m["fail_open"])

	subs, ok := m["subscriptions"].([]any)
	require.True(t, ok, "subscriptions is an array")
	require.Len(t, subs, 2)
	first := subs[0].(map[string]any)
	require.ElementsMatch(t, []string{"id", "customer_id", "status", "price_ids", "product_ids",
		"current_period_end", "cancel_at_period_end", "trial_end", "ended_at"}, keys(first))
	require.Equal(t, map[string]any{
		"id": "sub_1", "customer_id": "cus_123", "status": "active",
		"price_ids": []any{"price_1"}, "product_ids": []any{"prod_1"},
		"current_period_end": "2026-12-22T10:00:00Z", "cancel_at_period_end": false,
		"trial_end": nil, "ended_at": nil,
	}, first)
	second2 := subs[1].(map[string]any)
	require.Equal(t, []any{}, second2["price_ids"], "an empty list is [], never null")
	require.Equal(t, "2026-12-01T10:00:00Z", second2["trial_end"], "times are UTC")
	require.Equal(t, true, second2["cancel_at_period_end"])
}

func TestCustomerAnswerShape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orphan := freeCustomer("cus_orphan", "")
	save(t, b.db, premiumCustomer(), orphan)

	m := b.getJSON(t, "/v1/customers/cus_123/entitlement", http.StatusOK)
	require.Equal(t, "u_42", m["user_id"])
	require.Equal(t, []any{"cus_123"}, m["customer_ids"])
	require.Equal(t, true, m["premium"])
	require.Len(t, m["subscriptions"], 1)

	m = b.getJSON(t, "/v1/customers/cus_orphan/entitlement", http.StatusOK)
	require.Contains(t, m, "user_id")
	require.Nil(t, m["user_id"], "a customer without a user has user_id null")
	require.Equal(t, false, m["premium"])
	require.Equal(t, "none", m["status"])
	require.Equal(t, []any{}, m["features"], "features is [] when nothing grants")
	require.Equal(t, []any{}, m["subscriptions"])
	require.Equal(t, "2026-11-01T00:00:00Z", m["last_event_created"])
	requireUTC(t, m["updated_at"])
}

func TestIDsInThePath(t *testing.T) {
	t.Parallel()
	b := setup(t)
	odd := freeCustomer("cus_odd", "user/with space%and/slashes é")
	save(t, b.db, odd)

	m := b.getJSON(t, "/v1/users/"+url.PathEscape(odd.UserID)+"/entitlement", http.StatusOK)
	require.Equal(t, odd.UserID, m["user_id"], "percent-encoded ids are decoded once")

	tests := []struct {
		name string
		path string
		want int
	}{
		{"too long", "/v1/users/" + strings.Repeat("x", 256) + "/entitlement", http.StatusBadRequest},
		{"control character", "/v1/users/a%00b/entitlement", http.StatusBadRequest},
		{"newline", "/v1/customers/a%0Ab/entitlement", http.StatusBadRequest},
		{"invalid UTF-8", "/v1/users/a%ffb/entitlement", http.StatusBadRequest},
		{"longest allowed", "/v1/users/" + strings.Repeat("x", 255) + "/entitlement", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := b.get(t, tt.path, testToken)
			require.Equal(t, tt.want, rec.Code, rec.Body.String())
			if tt.want == http.StatusBadRequest {
				require.Contains(t, rec.Body.String(), `"code":"invalid_id"`)
			}
		})
	}
}

// TestDatabaseDownIs503WithoutInternals: an outage is 503 (retry), not 500; the cause is logged,
// the answer says nothing of it.
func TestDatabaseDownIs503WithoutInternals(t *testing.T) {
	t.Parallel()
	b := startInstance(t, nil, "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=1")
	rec := b.get(t, "/v1/users/u_42/entitlement", testToken)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	body := rec.Body.String()
	require.Contains(t, []string{
		`{"error":{"code":"unavailable","message":"the read model is unavailable; retry"}}`,
		`{"error":{"code":"unavailable","message":"the read model did not answer in time; retry"}}`,
	}, strings.TrimSpace(body))
	require.NotEmpty(t, b.logs.lines(t, "request failed"), "the cause is logged")
	require.Contains(t, b.logs.String(), "127.0.0.1")
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func requireUTC(t *testing.T, v any) {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "%v is a string", v)
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(s, "Z"), "%s is UTC", s)
	require.WithinDuration(t, time.Now(), ts, time.Minute)
}
