package stripeapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/processortest"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"golang.org/x/time/rate"

	"github.com/tollgate/tollgate/pkg/backoff"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// retryBundle is a retryTransport in front of a scripted server.
type retryBundle struct {
	client  *http.Client
	url     string
	hits    atomic.Int64
	mu      sync.Mutex
	retries []stripeapi.RetryInfo
	retry   chan struct{} // a value per retry, as long as there is room
}

func (b *retryBundle) retried() []stripeapi.RetryInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]stripeapi.RetryInfo(nil), b.retries...)
}

// setupRetry serves answer (given the 1-based hit number) behind a retryTransport.
func setupRetry(t *testing.T, limit rate.Limit, maxAttempts int, answer func(n int64, w http.ResponseWriter)) *retryBundle {
	t.Helper()
	b := &retryBundle{retry: make(chan struct{}, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		answer(b.hits.Add(1), w)
	}))
	t.Cleanup(srv.Close)
	tr := &stripeapi.RetryTransport{
		Next: http.DefaultTransport.(*http.Transport).Clone(), Limiter: rate.NewLimiter(limit, 1),
		MaxAttempts: maxAttempts, Backoff: backoff.Policy{Base: time.Millisecond, Max: 10 * time.Millisecond},
		OnRetry: func(r stripeapi.RetryInfo) {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.retries = append(b.retries, r)
			select {
			case b.retry <- struct{}{}:
			default:
			}
		},
	}
	b.client = &http.Client{Transport: tr}
	t.Cleanup(b.client.CloseIdleConnections)
	b.url = srv.URL + "/v1/events"
	return b
}

func (b *retryBundle) do(t *testing.T, ctx context.Context, method string) (*http.Response, error) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = bytes.NewReader([]byte("a=1"))
	}
	req, err := http.NewRequestWithContext(ctx, method, b.url, body)
	require.NoError(t, err)
	resp, err := b.client.Do(req)
	if resp != nil {
		t.Cleanup(func() { _ = resp.Body.Close() })
	}
	return resp, err
}

func TestRetryTransportHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	b := setupRetry(t, rate.Inf, 5, func(n int64, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	})
	start := time.Now()
	resp, err := b.do(t, t.Context(), http.MethodGet)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.GreaterOrEqual(t, time.Since(start), time.Second, "waited the Retry-After, not the 1ms backoff")
	require.EqualValues(t, 2, b.hits.Load())
	r := b.retried()
	require.Len(t, r, 1)
	require.Equal(t, http.StatusTooManyRequests, r[0].Status)
	require.Equal(t, time.Second, r[0].Wait)
	require.Equal(t, "GET /v1/events: 429 (attempt 1 of 5); retrying in 1s", r[0].String())
}

func TestRetryTransportOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		method    string
		answer    func(n int64, w http.ResponseWriter)
		wantHits  int64
		wantFinal int
	}{
		{"5xx until it works", http.MethodGet, func(n int64, w http.ResponseWriter) {
			if n < 3 {
				w.WriteHeader(http.StatusBadGateway)
			}
		}, 3, 200},
		{"5xx every time: bounded attempts, the last answer returned", http.MethodGet, func(_ int64, w http.ResponseWriter) {
			w.WriteHeader(http.StatusInternalServerError)
		}, 4, 500},
		{"429 every time", http.MethodGet, func(_ int64, w http.ResponseWriter) {
			w.WriteHeader(http.StatusTooManyRequests)
		}, 4, 429},
		{"4xx is final", http.MethodGet, func(_ int64, w http.ResponseWriter) {
			w.WriteHeader(http.StatusUnauthorized)
		}, 1, 401},
		{"a POST is never retried", http.MethodPost, func(_ int64, w http.ResponseWriter) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}, 1, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupRetry(t, rate.Inf, 4, tt.answer)
			resp, err := b.do(t, t.Context(), tt.method)
			require.NoError(t, err)
			require.Equal(t, tt.wantFinal, resp.StatusCode)
			require.Equal(t, tt.wantHits, b.hits.Load())
			require.Len(t, b.retried(), int(tt.wantHits-1))
		})
	}
}

func TestRetryTransportNetworkErrors(t *testing.T) {
	t.Parallel()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now: connection refused

	b := setupRetry(t, rate.Inf, 3, func(int64, http.ResponseWriter) {})
	b.url = "http://" + addr + "/v1/events"
	_, err = b.do(t, t.Context(), http.MethodGet)
	require.Error(t, err)
	r := b.retried()
	require.Len(t, r, 2, "3 attempts")
	require.Zero(t, r[0].Status)
	require.Error(t, r[0].Err)
}

func TestRetryTransportStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	b := setupRetry(t, rate.Inf, 5, func(_ int64, w http.ResponseWriter) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer cancel()
		select {
		case <-b.retry: // waiting out the Retry-After now
		case <-time.After(10 * time.Second):
		}
	}()
	start := time.Now()
	_, err := b.do(t, ctx, http.MethodGet)
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), 10*time.Second, "did not sit out the Retry-After")
	require.EqualValues(t, 1, b.hits.Load())
}

func TestRetryTransportKeepsTheRate(t *testing.T) {
	t.Parallel()
	b := setupRetry(t, 20, 3, func(int64, http.ResponseWriter) {})
	start := time.Now()
	for range 11 {
		resp, err := b.do(t, t.Context(), http.MethodGet)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "11 requests at 20/s take at least 10 intervals")
}

// The backoff itself is tested in pkg/backoff; here the Retry-After it gives way to.
func TestRetryAfterHeader(t *testing.T) {
	t.Parallel()
	after, ok := stripeapi.RetryAfter("7")
	require.True(t, ok)
	require.Equal(t, 7*time.Second, after)
	_, ok = stripeapi.RetryAfter("soon")
	require.False(t, ok)
	after, ok = stripeapi.RetryAfter(time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat))
	require.True(t, ok)
	require.Zero(t, after)
}

// newTestAPI is a stripeAPI on the fake, retrying fast.
func newTestAPI(t *testing.T, fake *stripetest.API, key string) *stripeapi.API {
	t.Helper()
	api := stripeapi.New(config.StripeAPI{Key: key, Base: fake.URL}, stripeapi.Options{Rate: 1000, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	t.Cleanup(api.Close)
	return api
}

func TestStripeAPIEventsPaginatesRawEvents(t *testing.T) {
	t.Parallel()
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{Every500: 3})
	ids, raws := processortest.AddEvents(t, fake, "pg", 230, func(int) bool { return true })
	api := newTestAPI(t, fake, processortest.TestAPIKey)

	var got []string
	for raw, err := range api.Events(t.Context(), stripeapi.EventQuery{}) {
		require.NoError(t, err)
		ev, err := stripeevent.Parse(raw)
		require.NoError(t, err)
		require.Equal(t, raws[len(got)], []byte(raw), "the bytes of the page, not a re-marshalled event")
		got = append(got, ev.ID)
	}
	require.Equal(t, ids, got, "every event once, newest first")
	var pages int
	for _, r := range fake.Requests() {
		if r.Status == http.StatusOK {
			pages++
			require.Equal(t, "100", r.Query.Get("limit"))
		}
	}
	require.Equal(t, 3, pages)
}

func TestStripeAPIEventsQuery(t *testing.T) {
	t.Parallel()
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{})
	ids, _ := processortest.AddEvents(t, fake, "q", 40, func(i int) bool { return i%2 == 0 })
	api := newTestAPI(t, fake, processortest.TestAPIKey)

	var got []string
	q := stripeapi.EventQuery{CreatedGTE: 1, CreatedLTE: time.Now().Unix(), Undelivered: true,
		Types: []string{"customer.subscription.updated"}, StartingAfter: ids[10]}
	for raw, err := range api.Events(t.Context(), q) {
		require.NoError(t, err)
		ev, err := stripeevent.Parse(raw)
		require.NoError(t, err)
		got = append(got, ev.ID)
	}
	var want []string
	for i, id := range ids[11:] {
		n := 40 - 1 - (11 + i) // the index addEvents gave it
		if n%2 == 1 && n%4 != 3 {
			want = append(want, id)
		}
	}
	require.Equal(t, want, got)
	reqs := fake.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "false", reqs[0].Query.Get("delivery_success"))
	require.Equal(t, "customer.subscription.updated", reqs[0].Query.Get("types[0]"))
	require.Equal(t, "1", reqs[0].Query.Get("created[gte]"))
	require.Equal(t, ids[10], reqs[0].Query.Get("starting_after"))
}

func TestStripeAPIErrors(t *testing.T) {
	t.Parallel()
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{})
	processortest.AddEvents(t, fake, "err", 3, func(int) bool { return true })

	for _, err := range newTestAPI(t, fake, "rk_test_wrong").Events(t.Context(), stripeapi.EventQuery{}) {
		var se *stripe.Error
		require.ErrorAs(t, err, &se)
		require.Equal(t, http.StatusUnauthorized, se.HTTPStatusCode)
		require.Contains(t, err.Error(), "list events")
	}

	alwaysDown := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{Every500: 1})
	for _, err := range newTestAPI(t, alwaysDown, processortest.TestAPIKey).Subscriptions(t.Context(), "") {
		var se *stripe.Error
		require.ErrorAs(t, err, &se)
		require.Equal(t, http.StatusInternalServerError, se.HTTPStatusCode)
	}
	require.Equal(t, stripeapi.ApiMaxAttempts, alwaysDown.Served(), "bounded attempts")
}

func TestStripeAPISubscriptions(t *testing.T) {
	t.Parallel()
	fake := stripetest.NewAPI(t, processortest.TestAPIKey, stripetest.Faults{Every429: 2, RetryAfter: 1})
	for i := range 150 {
		status := []string{"active", "canceled", "past_due"}[i%3]
		fake.AddSubscription(t, stripetest.Subscription(fmt.Sprintf("sub_%03d", i), fmt.Sprintf("cus_%d", i%7), status, "price_pro"), int64(1000+i))
	}
	api := newTestAPI(t, fake, processortest.TestAPIKey)

	byStatus := map[string]int{}
	var n int
	for s, err := range api.Subscriptions(t.Context(), "") {
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(s.CustomerID, "cus_"))
		byStatus[s.Status]++
		n++
	}
	require.Equal(t, 150, n)
	require.Equal(t, map[string]int{"active": 50, "canceled": 50, "past_due": 50}, byStatus)

	var ofOne []string
	for s, err := range api.Subscriptions(t.Context(), "cus_3") {
		require.NoError(t, err)
		require.Equal(t, "cus_3", s.CustomerID)
		ofOne = append(ofOne, s.ID)
	}
	require.Len(t, ofOne, 21) // i%7 == 3 for i < 150
	var limited int
	for _, r := range fake.Requests() {
		require.Equal(t, "all", r.Query.Get("status"))
		if r.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	require.Positive(t, limited, "429s were retried")
}
