package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/queryapi/client"
)

// clientBundle is the real query API served over HTTP on loopback, and what a client needs.
type clientBundle struct {
	*bundle
	url      string
	http     *http.Client
	requests *atomic.Int64 // requests that reached the server
}

func setupClient(t *testing.T, change ...func(*options)) *clientBundle {
	t.Helper()
	b := setup(t, change...)
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		b.srv.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	return &clientBundle{bundle: b, url: ts.URL, http: hc, requests: &n}
}

func (cb *clientBundle) client(opts ...client.Option) *client.Client {
	return client.New(cb.url, testToken, append([]client.Option{client.WithHTTPClient(cb.http)}, opts...)...)
}

func TestClientAgainstTheServer(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	save(t, cb.db, premiumCustomer(), freeCustomer("cus_free", "u_free"))
	c := cb.client()
	ctx := t.Context()

	premium, err := c.IsPremium(ctx, "u_42")
	require.NoError(t, err)
	require.True(t, premium)
	premium, err = c.IsPremium(ctx, "u_free")
	require.NoError(t, err)
	require.False(t, premium)
	premium, err = c.IsPremium(ctx, "u_nobody")
	require.NoError(t, err, "an unknown user is simply not premium")
	require.False(t, premium)

	e, err := c.Entitlement(ctx, "u_42")
	require.NoError(t, err)
	periodEnd := time.Date(2026, 12, 22, 10, 0, 0, 0, time.UTC)
	require.WithinDuration(t, time.Now(), e.UpdatedAt, time.Minute)
	e.UpdatedAt = time.Time{}
	require.Equal(t, client.Entitlement{
		UserID: "u_42", CustomerIDs: []string{"cus_123"}, Premium: true, Status: "active", Features: []string{"premium"},
		Limits: map[string]int64{}, Grants: []client.Grant{},
		Subscriptions: []client.Subscription{{ID: "sub_1", CustomerID: "cus_123", Status: "active",
			PriceIDs: []string{"price_1"}, ProductIDs: []string{"prod_1"}, CurrentPeriodEnd: periodEnd}},
		LastEventID: "evt_9", LastEventCreated: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	}, e)
	require.True(t, e.HasFeature("premium"))
	require.False(t, e.HasFeature("team"))

	_, err = c.Entitlement(ctx, "u_nobody")
	require.ErrorIs(t, err, client.ErrNotFound)
	var apiErr *client.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "not_found", apiErr.Code)

	odd := freeCustomer("cus_odd", "a/b c?d#e%f")
	save(t, cb.db, odd)
	e, err = c.Entitlement(ctx, odd.UserID)
	require.NoError(t, err, "ids are escaped in the path")
	require.Equal(t, odd.UserID, e.UserID)

	_, err = c.Entitlement(ctx, "")
	require.Error(t, err)
}

// The client's type holds every field the server answers: nothing is silently dropped.
func TestClientCoversTheAnswer(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	save(t, cb.db, premiumCustomer())
	m := cb.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)
	require.ElementsMatch(t, keys(m), jsonNames(reflect.TypeFor[client.Entitlement]()))
	sub := m["subscriptions"].([]any)[0].(map[string]any)
	require.ElementsMatch(t, keys(sub), jsonNames(reflect.TypeFor[client.Subscription]()))
}

func TestClientUnauthorized(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	save(t, cb.db, premiumCustomer())
	c := client.New(cb.url, "wrong", client.WithHTTPClient(cb.http), client.WithFailOpen())
	_, err := c.IsPremium(t.Context(), "u_42")
	require.ErrorIs(t, err, client.ErrUnauthorized, "a refused token is never masked by fail-open")
	_, err = c.Entitlement(t.Context(), "u_nobody")
	require.ErrorIs(t, err, client.ErrUnauthorized)
}

func TestClientCache(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	save(t, cb.db, freeCustomer("cus_1", "u_1"))
	ctx := t.Context()
	c := cb.client(client.WithCache(time.Hour, 10))

	premium, err := c.IsPremium(ctx, "u_1")
	require.NoError(t, err)
	require.False(t, premium)
	_, err = c.Entitlement(ctx, "u_2")
	require.ErrorIs(t, err, client.ErrNotFound)
	require.EqualValues(t, 2, cb.requests.Load())

	upgraded := premiumCustomer()
	upgraded.CustomerID, upgraded.UserID = "cus_1", "u_1"
	save(t, cb.db, upgraded, freeCustomer("cus_2", "u_2"))
	premium, err = c.IsPremium(ctx, "u_1")
	require.NoError(t, err)
	require.False(t, premium, "answered from the client's cache")
	_, err = c.Entitlement(ctx, "u_2")
	require.ErrorIs(t, err, client.ErrNotFound, "not found is cached too")
	require.EqualValues(t, 2, cb.requests.Load(), "no request reached the server")

	short := cb.client(client.WithCache(50*time.Millisecond, 10))
	_, err = short.IsPremium(ctx, "u_1")
	require.NoError(t, err)
	before := cb.requests.Load()
	require.Eventually(t, func() bool {
		premium, err := short.IsPremium(ctx, "u_1")
		return err == nil && premium && cb.requests.Load() > before
	}, 2*time.Second, 10*time.Millisecond, "after the ttl the client asks again")
}

func TestClientFailOpenWhenTheServerIsDown(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	save(t, cb.db, premiumCustomer())
	ctx := t.Context()
	var fallbacks atomic.Int64
	c := cb.client(client.WithFailOpen(), client.WithFallbackHook(func(userID string, err error) {
		if userID == "u_free" && err != nil {
			fallbacks.Add(1)
		}
	}))
	strict := cb.client()

	e, err := c.Entitlement(ctx, "u_42")
	require.NoError(t, err)
	require.False(t, e.Fallback, "a real answer is not a fallback")

	// The server goes away: its address refuses connections from now on.
	down := client.New(deadURL(t), testToken, client.WithHTTPClient(cb.http), client.WithFailOpen(),
		client.WithFallbackHook(func(string, error) { fallbacks.Add(1) }))
	e, err = down.Entitlement(ctx, "u_free")
	require.NoError(t, err)
	require.Equal(t, client.Entitlement{UserID: "u_free", CustomerIDs: []string{}, Premium: true, Status: "none",
		Features: []string{"premium"}, Limits: map[string]int64{}, Grants: []client.Grant{}, Subscriptions: []client.Subscription{}, Fallback: true}, e)
	premium, err := down.IsPremium(ctx, "u_free")
	require.NoError(t, err)
	require.True(t, premium)
	require.EqualValues(t, 2, fallbacks.Load(), "the hook sees every fallback")

	_, err = client.New(deadURL(t), testToken, client.WithHTTPClient(cb.http)).IsPremium(ctx, "u_free")
	require.Error(t, err, "without WithFailOpen an outage is an error")

	// 404 is an answer, not an outage.
	_, err = c.Entitlement(ctx, "u_nobody")
	require.ErrorIs(t, err, client.ErrNotFound)
	_, err = strict.Entitlement(ctx, "u_nobody")
	require.ErrorIs(t, err, client.ErrNotFound)
}

// A server that answers 5xx (the real server over a database that does not answer) gets the
// fallback; so does one that does not answer within the timeout.
func TestClientFailOpenOn5xxAndTimeout(t *testing.T) {
	t.Parallel()
	broken := startInstance(t, nil, "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
	ts := httptest.NewServer(broken.srv)
	t.Cleanup(ts.Close)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	ctx := t.Context()

	_, err := client.New(ts.URL, testToken, client.WithHTTPClient(hc)).Entitlement(ctx, "u_42")
	var apiErr *client.Error
	require.ErrorAs(t, err, &apiErr)
	require.GreaterOrEqual(t, apiErr.StatusCode, 500)

	e, err := client.New(ts.URL, testToken, client.WithHTTPClient(hc), client.WithFailOpen()).Entitlement(ctx, "u_42")
	require.NoError(t, err)
	require.True(t, e.Premium)
	require.True(t, e.Fallback)

	silent := silentServer(t)
	start := time.Now()
	e, err = client.New(silent, testToken, client.WithHTTPClient(hc), client.WithTimeout(100*time.Millisecond), client.WithFailOpen()).
		Entitlement(ctx, "u_42")
	require.NoError(t, err)
	require.True(t, e.Fallback)
	require.Less(t, time.Since(start), 2*time.Second, "WithTimeout bounds the wait")

	_, err = client.New(silent, testToken, client.WithHTTPClient(hc), client.WithTimeout(100*time.Millisecond)).
		Entitlement(ctx, "u_42")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The caller giving up is not an outage: no fallback.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = client.New(silent, testToken, client.WithHTTPClient(hc), client.WithFailOpen()).Entitlement(cctx, "u_42")
	require.ErrorIs(t, err, context.Canceled)
}

// The server's fail-open shows in the client as FailOpen, not Fallback.
func TestClientSeesServerFailOpen(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	failOpenCLI(t, cb.db.URL, "on")
	c := cb.client()
	require.Eventually(t, func() bool {
		e, err := c.Entitlement(t.Context(), "u_nobody")
		return err == nil && e.Premium && e.FailOpen && !e.Fallback
	}, 2*time.Second, 10*time.Millisecond)
}

// The Go client and the server under concurrency (run with -race).
func TestClientConcurrent(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	save(t, cb.db, premiumCustomer())
	c := cb.client(client.WithCache(time.Second, 100))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 50 {
				if ok, err := c.IsPremium(context.Background(), "u_42"); err != nil || !ok {
					errs <- errors.Join(err, errors.New("not premium"))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// deadURL is the URL of a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "http://" + addr
}

// silentServer accepts connections and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

func jsonNames(typ reflect.Type) []string {
	var out []string
	for _, f := range jsonFields(typ) {
		out = append(out, f.name)
	}
	return out
}
