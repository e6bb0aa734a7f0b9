package httpx_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/pkg/httpx"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWriteError(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	httpx.WriteError(rec, http.StatusBadRequest, "invalid_payload", "not a Stripe event")
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	require.JSONEq(t, `{"error":{"code":"invalid_payload","message":"not a Stripe event"}}`, rec.Body.String())

	rec = httptest.NewRecorder()
	httpx.WriteError(rec, http.StatusUnauthorized, "unauthorized", "")
	require.JSONEq(t, `{"error":{"code":"unauthorized"}}`, rec.Body.String())
}

func TestHealthAndReady(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("nats: not connected") }
	slow := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	leaky := func(context.Context) error {
		return errors.New(`postgres: failed to connect to user=tollgate_processor database=tollgate host=db.internal: password authentication failed`)
	}
	tests := []struct {
		name       string
		handler    http.Handler
		wantStatus int
		wantBody   string
	}{
		{"health", httpx.Health(), http.StatusOK, `{"status":"ok"}`},
		{"ready", httpx.Ready(time.Second, nil, ok, ok), http.StatusOK, `{"ready":true}`},
		{"first failing check", httpx.Ready(time.Second, nil, ok, down, slow), http.StatusServiceUnavailable, `{"ready":false,"reason":"nats: not ready (details in the log)"}`},
		{"check past the timeout", httpx.Ready(10*time.Millisecond, nil, slow), http.StatusServiceUnavailable, `{"ready":false,"reason":"not ready (details in the log)"}`},
		{"driver details stay in the log", httpx.Ready(time.Second, nil, leaky), http.StatusServiceUnavailable, `{"ready":false,"reason":"postgres: not ready (details in the log)"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			tt.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			require.Equal(t, tt.wantStatus, rec.Code)
			require.JSONEq(t, tt.wantBody, rec.Body.String())
		})
	}
}

// serve starts httpx.Serve on a loopback port with handler and returns its URL, the cancel
// that starts the shutdown and the channel of Serve's result.
func serve(t *testing.T, handler http.Handler, timeout time.Duration) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() {
		done <- httpx.Serve(ctx, &http.Server{Handler: handler, ReadHeaderTimeout: time.Second}, ln, timeout)
	}()
	return "http://" + ln.Addr().String(), cancel, done
}

func TestServeFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	url, cancel, done := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "finished")
	}), 10*time.Second)

	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		got <- result{string(b), err}
	}()

	<-entered
	cancel()
	// The listener closes at once while the request is still running.
	require.Eventually(t, func() bool {
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		c, err := d.DialContext(t.Context(), "tcp", strings.TrimPrefix(url, "http://"))
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Serve returned %v before the in-flight request finished", err)
	default:
	}
	close(release)

	r := <-got
	require.NoError(t, r.err)
	require.Equal(t, "finished", r.body)
	require.NoError(t, <-done)
}

func TestServeShutdownTimeout(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	url, cancel, done := serve(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(entered)
		<-release
	}), 50*time.Millisecond)
	t.Cleanup(func() { close(release) })

	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	require.ErrorContains(t, <-done, "in-flight requests did not finish")
}

func TestServeReportsListenerFailure(t *testing.T) {
	t.Parallel()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	err = httpx.Serve(context.Background(), &http.Server{ReadHeaderTimeout: time.Second}, ln, time.Second)
	require.ErrorContains(t, err, "serve ")
}

// Every JSON answer, error or not, carries nosniff and no-store.
func TestWriteJSONHeaders(t *testing.T) {
	t.Parallel()
	for _, write := range []func(http.ResponseWriter){
		func(w http.ResponseWriter) { httpx.WriteJSON(w, http.StatusOK, map[string]bool{"ok": true}) },
		func(w http.ResponseWriter) { httpx.WriteError(w, http.StatusBadRequest, "invalid", "why") },
	} {
		rec := httptest.NewRecorder()
		write(rec)
		require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
		require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://app.example/hooks":                     "https://app.example/hooks",
		"https://user:s3cret@app.example/hooks":         "https://app.example/hooks",
		"https://tok3n@app.example/hooks?key=k3y&a=b":   "https://app.example/hooks?a=xxxxx&key=xxxxx",
		"http://127.0.0.1:9/x":                          "http://127.0.0.1:9/x",
		"https://user:s3cret@app.example:8443/p?x#frag": "https://app.example:8443/p?x=xxxxx#frag",
	} {
		require.Equal(t, want, httpx.RedactURL(in), in)
	}
}
