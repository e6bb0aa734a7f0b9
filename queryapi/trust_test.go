package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

// Every answer, success or error, tells browsers not to sniff it and caches not to keep it.
func TestJSONAnswersAreNotSniffedOrStored(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.saveSettled(t, premiumCustomer())
	for _, tt := range []struct {
		name, path, token string
		status            int
	}{
		{"an answer", "/v1/customers/cus_123/entitlement?livemode=false", testToken, http.StatusOK},
		{"unauthorized", "/v1/customers/cus_123/entitlement", "", http.StatusUnauthorized},
		{"not found", "/v1/customers/cus_none/entitlement", testToken, http.StatusNotFound},
		{"no such route", "/v2/nothing", testToken, http.StatusNotFound},
		{"invalid parameter", "/v1/customers/cus_123/entitlement?livemode=maybe", testToken, http.StatusBadRequest},
		{"health", "/healthz", "", http.StatusOK},
	} {
		rec := b.get(t, tt.path, tt.token)
		require.Equal(t, tt.status, rec.Code, "%s: %s", tt.name, rec.Body.String())
		require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"), tt.name)
		require.Equal(t, "no-store", rec.Header().Get("Cache-Control"), tt.name)
	}
}

// One token cannot hold every waiter: with two tokens each holds at most half of them, and the
// other token's Checkout pages still wait.
func TestWaitForTokenShare(t *testing.T) {
	t.Parallel()
	const other = "other-token"
	waits := newWaiters(fakeMarks{}, 4, 2, unnotified{})
	srv := newServer(serverDeps{failOpen: off{}, tokens: []string{testToken, other}, logger: slog.New(slog.DiscardHandler),
		metrics: testMetrics(t), waits: waits})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	hold := func(token string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/users/u_42/entitlement?wait_for=evt_never&timeout=10s", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			srv.ServeHTTP(httptest.NewRecorder(), req)
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	hold(testToken)
	hold(testToken)
	require.Eventually(t, func() bool { return waits.n.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	rec := serveGet(t, srv, "/v1/users/u_42/entitlement?wait_for=evt_1&timeout=1s", testToken)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "a token past its share")
	require.Contains(t, rec.Body.String(), `"overloaded"`)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))

	hold(other)
	require.Eventually(t, func() bool { return waits.n.Load() == 3 }, 5*time.Second, 5*time.Millisecond, "the other token still waits")
	cancel()
	wg.Wait()
	require.Zero(t, waits.n.Load())
	require.Empty(t, waits.held)
}

// A wait of the documented maximum, 10 s, gets its whole answer through the real server: the
// write timeout (10 s) once cut it off and the client got an empty reply.
func TestWaitForAtItsMaximumThroughRun(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &logBuffer{}
	env := getenv(map[string]string{"HTTP_ADDR": "127.0.0.1:0", "DATABASE_URL": db.URL, "QUERYAPI_TOKENS": testToken})
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"queryapi"}, env, io.Discard, stderr) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	var addr string
	require.Eventually(t, func() bool {
		for _, l := range stderr.lines(t, "queryapi serving") {
			addr, _ = l["addr"].(string)
		}
		return addr != ""
	}, 10*time.Second, 10*time.Millisecond)

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/users/u_never/entitlement?wait_for=evt_never&timeout=10s", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	start := time.Now()
	resp, err := client.Do(req)
	require.NoError(t, err, "the answer after a 10 s wait")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.GreaterOrEqual(t, time.Since(start), 10*time.Second)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, string(body))
	require.Equal(t, "timeout", resp.Header.Get(waitHeader))
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
}

// unnotified is a cache that is never notified: waiters poll.
type unnotified struct{}

func (unnotified) notified() bool { return false }
func (unnotified) invalidate(key) {}
