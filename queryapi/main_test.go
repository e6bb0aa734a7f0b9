package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/syncbuf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "test-token-1"

// bundle is one running instance over a fresh database.
type bundle struct {
	db   *pgtest.DB
	app  *app
	srv  http.Handler
	reg  *prometheus.Registry
	logs *logBuffer
}

// setup starts an instance with a fresh migrated database; change adjusts its options.
func setup(t *testing.T, change ...func(*options)) *bundle {
	t.Helper()
	db := pgtest.New(t)
	return startInstance(t, db, db.URL, change...)
}

// startInstance starts one more instance reading databaseURL (db is where tests write).
func startInstance(t *testing.T, db *pgtest.DB, databaseURL string, change ...func(*options)) *bundle {
	t.Helper()
	opts := defaultOptions()
	for _, c := range change {
		c(&opts)
	}
	logs := &logBuffer{}
	reg := prometheus.NewRegistry()
	cfg := config.QueryAPI{HTTPAddr: "127.0.0.1:0", DatabaseURL: databaseURL, Tokens: []string{"other-token", testToken}}
	a, err := startApp(context.Background(), cfg, opts, newTestLogger(logs), reg)
	require.NoError(t, err)
	t.Cleanup(a.close)
	return &bundle{db: db, app: a, srv: a.handler, reg: reg, logs: logs}
}

// waitListening waits until the instance's cache follows notifications.
func (b *bundle) waitListening(t *testing.T) {
	t.Helper()
	require.Eventually(t, b.app.cache.listening, 5*time.Second, 5*time.Millisecond, "LISTEN session did not come up")
}

// get sends a GET through the real router; token "" sends no Authorization header.
func (b *bundle) get(t *testing.T, path, token string) *httptest.ResponseRecorder {
	t.Helper()
	return serveGet(t, b.srv, path, token)
}

func serveGet(t testing.TB, h http.Handler, path, token string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// getJSON is get that requires status and decodes the JSON body.
func (b *bundle) getJSON(t *testing.T, path string, want int) map[string]any {
	t.Helper()
	rec := b.get(t, path, testToken)
	require.Equal(t, want, rec.Code, rec.Body.String())
	require.Equal(t, "application/json", strings.Split(rec.Header().Get("Content-Type"), ";")[0])
	var m map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &m), rec.Body.String())
	return m
}

// save writes customer rows and refreshes the rows of their users, as the processor does.
func save(t *testing.T, db *pgtest.DB, cs ...entitlement.Customer) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, entitlement.SaveCustomers(ctx, db.Pool, cs))
	var users []scope.Key
	for _, c := range cs {
		if c.UserID != "" {
			users = append(users, c.Scope.Of(c.UserID))
		}
	}
	require.NoError(t, entitlement.RefreshUsers(ctx, db.Pool, users))
}

// saveSettled is save on a listening instance, waiting until the instance has applied the
// notifications of the write (one per customer and one per user), so that what the test reads
// next is not invalidated behind its back.
func (b *bundle) saveSettled(t *testing.T, cs ...entitlement.Customer) {
	t.Helper()
	b.waitListening(t)
	keys := map[string]bool{}
	for _, c := range cs {
		keys[customerKey(c.CustomerID).in(c.Scope).String()] = true
		if c.UserID != "" {
			keys[userKey(c.UserID).in(c.Scope).String()] = true
		}
	}
	before, _ := metricValue(t, b.reg, "tollgate_queryapi_cache_invalidations_total", nil)
	save(t, b.db, cs...)
	require.Eventually(t, func() bool {
		v, _ := metricValue(t, b.reg, "tollgate_queryapi_cache_invalidations_total", nil)
		return v >= before+float64(len(keys))
	}, 2*time.Second, 5*time.Millisecond)
}

// premiumCustomer is the contract's example row: u_42 / cus_123 with one active subscription.
func premiumCustomer() entitlement.Customer {
	periodEnd := time.Date(2026, 12, 22, 10, 0, 0, 0, time.UTC)
	return entitlement.Customer{
		CustomerID: "cus_123",
		UserID:     "u_42",
		Premium:    true,
		Status:     "active",
		Features:   []string{"premium"},
		Subscriptions: []entitlement.Subscription{{
			ID: "sub_1", CustomerID: "cus_123", Status: "active",
			PriceIDs: []string{"price_1"}, ProductIDs: []string{"prod_1"},
			CurrentPeriodEnd: &periodEnd,
		}},
		LastEventID:      "evt_9",
		LastEventCreated: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	}
}

// freeCustomer is a customer of user with no subscription.
func freeCustomer(customerID, userID string) entitlement.Customer {
	return entitlement.Customer{
		CustomerID: customerID, UserID: userID, Status: "none", Features: []string{},
		Subscriptions: []entitlement.Subscription{}, LastEventID: "evt_1",
		LastEventCreated: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	}
}

// metricValue is the value of the gauge or counter name with the given labels in reg.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

// logBuffer holds what a JSON logger wrote, safe for the logger's concurrent writes.
type logBuffer struct{ syncbuf.Buffer }

// lines are the JSON log lines written so far whose msg contains substr.
func (s *logBuffer) lines(t *testing.T, substr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		if msg, _ := m["msg"].(string); strings.Contains(msg, substr) {
			out = append(out, m)
		}
	}
	return out
}

// getenv is a getenv over a map.
func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func newTestLogger(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func serveRequest(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
