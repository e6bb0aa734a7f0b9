package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// TestReaders is the contract every reader passes: Postgres alone, and the cache in front of it
// (listening or not).
func TestReaders(t *testing.T) {
	t.Parallel()
	readers := map[string]func(t *testing.T, db *pgtest.DB) reader{
		"postgres": func(_ *testing.T, db *pgtest.DB) reader {
			return dbReader{q: db.Pool, timeout: time.Second}
		},
		"cache not listening": func(t *testing.T, db *pgtest.DB) reader {
			c := newCache(dbReader{q: db.Pool, timeout: time.Second}, modeNotify, time.Hour, 1<<20, testMetrics(t))
			t.Cleanup(c.wait)
			return c
		},
		"cache listening": func(t *testing.T, db *pgtest.DB) reader {
			c := newCache(dbReader{q: db.Pool, timeout: time.Second}, modeNotify, time.Hour, 1<<20, testMetrics(t))
			c.setListening(true)
			t.Cleanup(c.wait)
			return c
		},
	}
	for name, newReader := range readers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t)
			save(t, db, premiumCustomer())
			r := newReader(t, db)
			ctx := t.Context()
			for range 2 { // the second round may come from memory
				a, err := r.read(ctx, userKey("u_42"))
				require.NoError(t, err)
				require.True(t, a.found)
				require.True(t, a.view.Premium)
				require.Equal(t, []string{"cus_123"}, a.view.CustomerIDs)
				require.JSONEq(t, string(a.body), mustJSON(t, a.view))

				a, err = r.read(ctx, customerKey("cus_123"))
				require.NoError(t, err)
				require.True(t, a.found)
				require.Equal(t, "u_42", *a.view.UserID)

				for _, k := range []key{userKey("u_nobody"), customerKey("cus_nobody"), customerKey("u_42"), userKey("cus_123")} {
					a, err = r.read(ctx, k)
					require.NoError(t, err, "not found is an answer, not an error")
					require.False(t, a.found, k.String())
				}
			}
		})
	}
}

// A change committed by any writer is visible through the cache within 2 s even with an
// hour-long max age: the notification, not the age, refreshes it. Negative answers too.
func TestCacheFollowsNotifications(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.cache.MaxAge = time.Hour })
	b.saveSettled(t, freeCustomer("cus_1", "u_1"))

	require.Equal(t, false, b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"])
	require.Equal(t, false, b.getJSON(t, "/v1/customers/cus_1/entitlement", http.StatusOK)["premium"])
	require.Equal(t, http.StatusNotFound, b.get(t, "/v1/users/u_2/entitlement", testToken).Code)
	hits := counter(t, b.reg, "tollgate_queryapi_cache_hits_total")
	require.Equal(t, false, b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"])
	require.Equal(t, http.StatusNotFound, b.get(t, "/v1/users/u_2/entitlement", testToken).Code)
	require.InDelta(t, hits+2, counter(t, b.reg, "tollgate_queryapi_cache_hits_total"), 0, "found and not found are both cached")

	upgraded := premiumCustomer()
	upgraded.CustomerID, upgraded.UserID = "cus_1", "u_1"
	save(t, b.db, upgraded, freeCustomer("cus_2", "u_2"))

	require.Eventually(t, func() bool {
		return b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"] == true &&
			b.getJSON(t, "/v1/customers/cus_1/entitlement", http.StatusOK)["premium"] == true &&
			b.get(t, "/v1/users/u_2/entitlement", testToken).Code == http.StatusOK
	}, 2*time.Second, 5*time.Millisecond)

	// A deletion is a change too.
	_, err := b.db.Pool.Exec(context.Background(), `DELETE FROM user_entitlements WHERE user_id = 'u_2'`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return b.get(t, "/v1/users/u_2/entitlement", testToken).Code == http.StatusNotFound
	}, 2*time.Second, 5*time.Millisecond)

	// TRUNCATE (a rebuild of the read model) drops everything.
	_, err = b.db.Pool.Exec(context.Background(), `TRUNCATE user_entitlements`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return b.get(t, "/v1/users/u_1/entitlement", testToken).Code == http.StatusNotFound
	}, 2*time.Second, 5*time.Millisecond)
}

// With notifications lost (triggers dropped), a change is still visible within the max age:
// the staleness bound (QUERYAPI_CACHE_MAX_AGE, 1 s here).
func TestCacheStalenessBoundWithoutNotifications(t *testing.T) {
	t.Parallel()
	const maxAge = time.Second
	b := setup(t, func(o *options) { o.cache.MaxAge = maxAge })
	b.waitListening(t)
	dropNotifyTriggers(t, b.db)
	save(t, b.db, freeCustomer("cus_1", "u_1"))

	primed := time.Now()
	require.Equal(t, false, b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"])
	upgraded := premiumCustomer()
	upgraded.CustomerID, upgraded.UserID = "cus_1", "u_1"
	save(t, b.db, upgraded)
	changed := time.Now()
	stale := b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"]
	if time.Since(primed) < maxAge/2 {
		require.Equal(t, false, stale, "the cache answers (this test would prove nothing otherwise)")
	}

	require.Eventually(t, func() bool {
		return b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"] == true
	}, maxAge+200*time.Millisecond, 5*time.Millisecond)
	require.LessOrEqual(t, time.Since(changed), maxAge+200*time.Millisecond)
}

// Losing the LISTEN session drops everything and reads go to Postgres until it is back; the
// new session starts from an empty cache.
func TestCacheFlushesWhenListenReconnects(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.cache.MaxAge = time.Hour })
	b.waitListening(t)
	dropNotifyTriggers(t, b.db)
	save(t, b.db, freeCustomer("cus_1", "u_1"))
	require.Equal(t, false, b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"])
	upgraded := premiumCustomer()
	upgraded.CustomerID, upgraded.UserID = "cus_1", "u_1"
	save(t, b.db, upgraded)
	require.Equal(t, false, b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"], "stale: no notification, max age 1 h")

	flushes := counter(t, b.reg, "tollgate_queryapi_cache_flushes_total")
	var killed int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND application_name = $2`, b.db.Name, listenApplicationName).Scan(&killed))
	require.Equal(t, 1, killed)

	require.Eventually(t, func() bool {
		return b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"] == true
	}, 5*time.Second, 5*time.Millisecond)
	b.waitListening(t)
	require.GreaterOrEqual(t, counter(t, b.reg, "tollgate_queryapi_cache_flushes_total"), flushes+2, "flushed on loss and on reconnect")
	require.NotEmpty(t, b.logs.lines(t, "LISTEN session lost"))
}

// gatedReader is the next layer of a cache under test: each read blocks until released (one
// send on release lets one read through; closing it lets all through) and answers the value
// current when the read began.
type gatedReader struct {
	calls   atomic.Int32
	started chan struct{}
	release chan struct{}
	mu      sync.Mutex
	premium bool
}

func newGatedReader() *gatedReader {
	return &gatedReader{started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (g *gatedReader) read(ctx context.Context, _ key) (*answer, error) {
	g.mu.Lock()
	premium := g.premium // read at the start, like a snapshot
	g.mu.Unlock()
	g.calls.Add(1)
	g.started <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return newAnswer(entitlement.Answer{Premium: premium})
}

func (g *gatedReader) set(premium bool) {
	g.mu.Lock()
	g.premium = premium
	g.mu.Unlock()
}

// An invalidation that arrives while a read is in flight keeps that read's (older) answer out.
func TestCacheInvalidationDuringRead(t *testing.T) {
	t.Parallel()
	g := newGatedReader()
	c := newCache(g, modeNotify, time.Hour, 1<<20, testMetrics(t))
	c.setListening(true)
	t.Cleanup(c.wait)
	k := userKey("u_1")

	done := make(chan *answer)
	go func() {
		a, _ := c.read(context.Background(), k)
		done <- a
	}()
	<-g.started      // the read took its snapshot: premium false
	g.set(true)      // a writer commits...
	c.invalidate(k)  // ...and its notification arrives before the read ends
	close(g.release) // every read answers at once from now on
	require.False(t, (<-done).view.Premium, "the racing read answers what it read")

	a, err := c.read(context.Background(), k)
	require.NoError(t, err)
	require.True(t, a.view.Premium, "but its answer was not kept")
	require.EqualValues(t, 2, g.calls.Load())
}

// A key in use is refreshed in the background before it expires: callers keep getting the
// cached answer without waiting, then the refreshed one.
func TestCacheRefreshesAhead(t *testing.T) {
	t.Parallel()
	g := newGatedReader()
	c := newCache(g, modeNotify, 2*time.Second, 1<<20, testMetrics(t))
	c.setListening(true)
	t.Cleanup(c.wait)
	t.Cleanup(func() { close(g.release) })
	k := userKey("u_1")

	go func() { <-g.started; g.release <- struct{}{} }()
	a, err := c.read(context.Background(), k)
	require.NoError(t, err)
	require.False(t, a.view.Premium)

	g.set(true)
	// Hits until the refresh point (50 to 75 % of the max age: 1 to 1.5 s) start one refresh,
	// which stays blocked; every read still answers at once from memory.
	require.Eventually(t, func() bool {
		a, err := c.read(context.Background(), k)
		return err == nil && !a.view.Premium && g.calls.Load() == 2
	}, 1900*time.Millisecond, 5*time.Millisecond)
	<-g.started
	g.release <- struct{}{}
	require.Eventually(t, func() bool {
		a, err := c.read(context.Background(), k)
		return err == nil && a.view.Premium
	}, 2*time.Second, 5*time.Millisecond)
	require.EqualValues(t, 2, g.calls.Load(), "one refresh, however many hits")
}

// Concurrent misses of one key share one read.
func TestCacheSharesConcurrentMisses(t *testing.T) {
	t.Parallel()
	g := newGatedReader()
	c := newCache(g, modeNotify, time.Hour, 1<<20, testMetrics(t))
	c.setListening(true)
	t.Cleanup(c.wait)

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			a, err := c.read(context.Background(), userKey("u_1"))
			if assert.NoError(t, err) {
				assert.True(t, a.found)
			}
		})
	}
	<-g.started
	require.Never(t, func() bool { return len(g.started) > 0 }, 50*time.Millisecond, 5*time.Millisecond)
	close(g.release)
	wg.Wait()
	require.EqualValues(t, 1, g.calls.Load())
}

// A waiter whose request ends stops waiting; the shared read goes on for the others.
func TestCacheWaitEndsWithTheRequest(t *testing.T) {
	t.Parallel()
	g := newGatedReader()
	c := newCache(g, modeNotify, time.Hour, 1<<20, testMetrics(t))
	c.setListening(true)
	t.Cleanup(c.wait)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := c.read(ctx, userKey("u_1"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	close(g.release)
	a, err := c.read(context.Background(), userKey("u_1"))
	assertNoErrorFound(t, a, err)
	require.EqualValues(t, 1, g.calls.Load(), "the abandoned read still filled the cache")
}

// However many keys are read, the entries' estimated size stays within the byte budget.
func TestCacheStaysWithinItsBudget(t *testing.T) {
	t.Parallel()
	g := newGatedReader()
	close(g.release)
	g.started = make(chan struct{}, 10_000)
	const budget = 256 << 10
	m := testMetrics(t)
	c := newCache(g, modeNotify, time.Hour, budget, m)
	c.setListening(true)
	t.Cleanup(c.wait)
	for i := range 5000 {
		_, err := c.read(context.Background(), userKey(fmt.Sprint("u_", i)))
		require.NoError(t, err)
		require.LessOrEqual(t, c.size(), int64(budget))
	}
	c.wait()
	require.LessOrEqual(t, c.size(), int64(budget))
	require.Greater(t, c.size(), int64(budget)*3/4, "the budget is used, not just respected")
	require.Positive(t, c.len())
	require.Less(t, c.len(), 5000)
	var sum int64
	for i := range c.shards {
		for _, e := range c.shards[i].entries {
			sum += e.size
		}
	}
	require.Equal(t, sum, c.size(), "the running total is the entries' sum")
	require.InDelta(t, float64(5000-c.len()), testutil.ToFloat64(m.cacheEvictions), 0)
}

// Not listening: nothing is kept.
func TestCacheKeepsNothingWhileNotListening(t *testing.T) {
	t.Parallel()
	g := newGatedReader()
	close(g.release)
	c := newCache(g, modeNotify, time.Hour, 1<<20, testMetrics(t))
	t.Cleanup(c.wait)
	for range 3 {
		_, err := c.read(context.Background(), userKey("u_1"))
		require.NoError(t, err)
	}
	require.EqualValues(t, 3, g.calls.Load())
	require.Zero(t, c.len())
}

func assertNoErrorFound(t *testing.T, a *answer, err error) {
	t.Helper()
	require.NoError(t, err)
	require.True(t, a.found)
}

func testMetrics(t *testing.T) *metrics {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	return m
}

// counter is the value of an unlabelled counter or gauge.
func counter(tb testing.TB, reg prometheus.Gatherer, name string) float64 {
	tb.Helper()
	v, ok := metricValue(tb, reg, name, nil)
	require.True(tb, ok, name)
	return v
}

func dropNotifyTriggers(t *testing.T, db *pgtest.DB) {
	t.Helper()
	_, err := db.Pool.Exec(context.Background(), `DROP TRIGGER customer_entitlements_notify ON customer_entitlements;
		DROP TRIGGER user_entitlements_notify ON user_entitlements`)
	require.NoError(t, err)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestNotificationPayloads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		payload string
		want    key
		ok      bool
	}{
		{"u:test  u_42", userKey("u_42"), true},
		{"c:test  cus_123", customerKey("cus_123"), true},
		{"u:live  u_42", userKey("u_42").in(scope.Live()), true},
		{"c:test acct_1 cus_123", customerKey("cus_123").in(scope.Scope{Account: "acct_1"}), true},
		{"u:live acct_1 a b", userKey("a b").in(scope.Scope{Livemode: true, Account: "acct_1"}), true},
		{"u:test  a:b", userKey("a:b"), true},
		{"u:test  ", userKey(""), true},
		{"u:u_42", key{}, false},
		{"u:prod  u_42", key{}, false},
		{"*", key{}, false},
		{"x:1", key{}, false},
		{"", key{}, false},
	}
	for _, tt := range tests {
		k, ok := parseKey(tt.payload)
		require.Equal(t, tt.ok, ok, tt.payload)
		require.Equal(t, tt.want, k, tt.payload)
		if ok {
			require.Equal(t, tt.payload, k.String(), "String is the payload")
		}
	}
	require.NotEqual(t, userKey("x"), customerKey("x"))
	require.NotEqual(t, userKey("x"), userKey("x").in(scope.Live()))
}
