package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/health"
	"github.com/tollgate/tollgate/processor/internal/processortest"

	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/pgpool"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/wait"
)

func get(tb testing.TB, h http.Handler, path string) (int, string) {
	tb.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(tb.Context(), http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestReadiness(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	up := b.Nats.Connect(t)
	down, err := nats.Connect(b.Nats.URL())
	require.NoError(t, err)
	down.Close()
	unreachable, err := pgpool.Open(t.Context(), "postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=1")
	require.NoError(t, err)
	t.Cleanup(unreachable.Close)
	current := pgpool.NewSchemaCheck(b.DB.URL, time.Hour) // a loaded machine may take minutes to reach the subtest
	current.Refresh()
	behind := pgpool.NewSchemaCheck(pgtest.NewEmpty(t).URL, time.Minute)
	behind.Refresh()
	var started, notStarted atomic.Bool
	started.Store(true)

	for _, tc := range []struct {
		name   string
		checks []httpx.Check
		status int
		reason string
	}{
		{"ready", []httpx.Check{health.NATSCheck(up), health.PostgresCheck(b.DB.Pool), current.Check, health.ConsumerCheck(&started)}, http.StatusOK, ""},
		{"nats closed", []httpx.Check{health.NATSCheck(down), health.PostgresCheck(b.DB.Pool), current.Check, health.ConsumerCheck(&started)}, 503, "nats: not ready"},
		{"postgres unreachable", []httpx.Check{health.NATSCheck(up), health.PostgresCheck(unreachable), current.Check, health.ConsumerCheck(&started)}, 503, "postgres: not ready"},
		{"schema behind", []httpx.Check{health.NATSCheck(up), health.PostgresCheck(b.DB.Pool), behind.Check, health.ConsumerCheck(&started)}, 503, "schema: not ready"},
		{"schema never read", []httpx.Check{pgpool.NewSchemaCheck(b.DB.URL, time.Minute).Check}, 503, "schema: not ready"},
		{"no consumer yet", []httpx.Check{health.NATSCheck(up), health.ConsumerCheck(&notStarted)}, 503, "consumer: not ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := health.NewServer(prometheus.NewRegistry(), nil, tc.checks...)
			status, body := get(t, srv, "/readyz")
			require.Equal(t, tc.status, status, body)
			var got httpx.ReadyBody
			require.NoError(t, json.Unmarshal([]byte(body), &got))
			require.Equal(t, tc.status == http.StatusOK, got.Ready)
			require.True(t, strings.HasPrefix(got.Reason, tc.reason), "reason %q", got.Reason)
			status, _ = get(t, srv, "/healthz")
			require.Equal(t, http.StatusOK, status, "healthz answers whatever the dependencies")
		})
	}
}

func TestSchemaCheckGoesStale(t *testing.T) {
	t.Parallel()
	s := pgpool.NewSchemaCheck(pgtest.New(t).URL, time.Millisecond)
	s.Refresh()
	s.Checked = s.Checked.Add(-time.Second)
	require.ErrorContains(t, s.Check(context.Background()), "schema: last checked")
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	in := b.Start(t, processortest.TestOptions(), b.DB.URL)
	k := processortest.NewKit(t, "m")
	events := k.Signup("cus_m", "u_m", "sub_m", "price_basic", processortest.T0)
	b.Publish(t, events...)
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, events...), 10*time.Second)
	b.PublishRaw(t, "stripe.events._none.bad", []byte("not json"))
	wait.For(t, 10*time.Second, "the bad message dead-lettered", func() bool {
		return processortest.Counter(in.Metrics.Outcomes.WithLabelValues("dead_letter")) == 1
	})

	status, body := get(t, health.NewServer(in.Reg, nil), "/metrics")
	require.Equal(t, http.StatusOK, status)
	for _, want := range []string{
		`tollgate_processor_events_total{type="customer.created"} 1`,
		`tollgate_processor_events_total{type="customer.subscription.updated"} 1`,
		`tollgate_processor_messages_total{outcome="ack"} 5`,
		`tollgate_processor_messages_total{outcome="dead_letter"} 1`,
		`tollgate_processor_batch_size_count`,
		`tollgate_processor_derive_duration_seconds_count`,
		`tollgate_processor_replay_duration_seconds_count`,
		`tollgate_processor_entitlements_changed_total`,
		`tollgate_processor_redeliveries_total 0`,
		`tollgate_processor_consumer_pending`,
		`tollgate_processor_dead_letters`,
		`go_goroutines`,
	} {
		require.Contains(t, body, want)
	}
}

func TestHTTPServerHasEveryTimeout(t *testing.T) {
	t.Parallel()
	srv := health.NewHTTPServer(http.NotFoundHandler(), processortest.TestLogger(t))
	require.Positive(t, srv.ReadHeaderTimeout)
	require.Positive(t, srv.ReadTimeout)
	require.Positive(t, srv.WriteTimeout)
	require.Positive(t, srv.IdleTimeout)
}

func TestEventTypeLabelIsBounded(t *testing.T) {
	t.Parallel()
	require.Equal(t, "invoice.paid", ingest.EventTypeLabel("invoice.paid"))
	require.Equal(t, "customer.subscription.updated", ingest.EventTypeLabel("customer.subscription.updated"))
	require.Equal(t, "other", ingest.EventTypeLabel("anything.an.attacker.signs"))
	require.Equal(t, "other", ingest.EventTypeLabel(strings.Repeat("x", 5000)))
}
