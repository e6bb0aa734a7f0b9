package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// At start (and on every new LISTEN session) the cache reads the most recently changed answers,
// so the first check of a recently changed user is served from memory.
func TestCacheWarmsFromTheLatestChanges(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	for i := range 3 { // three transactions: u_0 changed first, u_2 last
		save(t, db, freeCustomer(fmt.Sprint("cus_", i), fmt.Sprint("u_", i)))
	}
	b := startInstance(t, db, db.URL, func(o *options) { o.cache.Warm = 2 })
	b.waitListening(t)
	require.Eventually(t, func() bool { return b.app.cache.len() == 4 }, 5*time.Second, 5*time.Millisecond,
		"2 users and 2 customers")
	require.NotEmpty(t, b.logs.lines(t, "cache warmed"))

	misses := counter(t, b.reg, "tollgate_queryapi_cache_misses_total")
	for _, p := range []string{"/v1/users/u_2/entitlement", "/v1/users/u_1/entitlement", "/v1/customers/cus_2/entitlement"} {
		require.Equal(t, false, b.getJSON(t, p, http.StatusOK)["premium"])
	}
	require.InDelta(t, misses, counter(t, b.reg, "tollgate_queryapi_cache_misses_total"), 0, "warmed: no read of Postgres")
	require.Equal(t, false, b.getJSON(t, "/v1/users/u_0/entitlement", http.StatusOK)["premium"])
	require.InDelta(t, misses+1, counter(t, b.reg, "tollgate_queryapi_cache_misses_total"), 0, "the oldest was not warmed")
	require.Positive(t, counter(t, b.reg, "tollgate_queryapi_cache_bytes"))
	require.InDelta(t, float64(config.DefaultCacheBytes), counter(t, b.reg, "tollgate_queryapi_cache_budget_bytes"), 0)
}

// gatedWarmer answers a warm read once released, with answers taken when the read began.
type gatedWarmer struct {
	started chan struct{}
	release chan struct{}
	answers []keyedAnswer
}

func (g *gatedWarmer) recent(ctx context.Context, _ int) ([]keyedAnswer, error) {
	answers := g.answers
	close(g.started)
	select {
	case <-g.release:
		return answers, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A change notified while the warm read runs keeps the warm read's (older) answer of that shard
// out, as it does for any read.
func TestCacheWarmYieldsToInvalidations(t *testing.T) {
	t.Parallel()
	g := newGatedReader()
	close(g.release)
	c := newCache(g, modeNotify, time.Hour, 1<<20, testMetrics(t))
	c.setListening(true)
	t.Cleanup(c.wait)
	stale, err := newAnswer(entitlement.Answer{Premium: false})
	require.NoError(t, err)
	w := &gatedWarmer{started: make(chan struct{}), release: make(chan struct{})}
	for i := range 200 {
		w.answers = append(w.answers, keyedAnswer{userKey(fmt.Sprint("u_", i)), stale})
	}
	c.startWarm(context.Background(), w, 200, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	<-w.started
	g.set(true)
	c.invalidate(userKey("u_7"))
	close(w.release)
	c.wait()

	require.Positive(t, c.len(), "the other shards were warmed")
	require.Less(t, c.len(), 200, "the invalidated shard was not")
	a, err := c.read(context.Background(), userKey("u_7"))
	require.NoError(t, err)
	require.True(t, a.view.Premium, "read anew, not the warm read's answer")
}

// Mode max-age (a hot standby, where LISTEN is refused): no LISTEN session, answers served from
// memory, and a change visible within the max age.
func TestCacheModeMaxAge(t *testing.T) {
	t.Parallel()
	const maxAge = 2 * time.Second
	b := setup(t, func(o *options) { o.cache.Mode, o.cache.MaxAge = config.CacheMaxAge, maxAge })
	require.Equal(t, "max-age", b.getJSON(t, "/readyz", http.StatusOK)["cache"])
	save(t, b.db, freeCustomer("cus_1", "u_1"))
	require.Equal(t, false, b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"])
	hits := counter(t, b.reg, "tollgate_queryapi_cache_hits_total")
	upgraded := premiumCustomer()
	upgraded.CustomerID, upgraded.UserID = "cus_1", "u_1"
	save(t, b.db, upgraded)
	changed := time.Now()
	b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)
	require.Greater(t, counter(t, b.reg, "tollgate_queryapi_cache_hits_total"), hits, "served from memory")
	require.Eventually(t, func() bool {
		return b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"] == true
	}, maxAge+200*time.Millisecond, 5*time.Millisecond)
	require.LessOrEqual(t, time.Since(changed), maxAge+200*time.Millisecond)

	var sessions int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = $1 AND application_name = $2`, b.db.Name, listenApplicationName).Scan(&sessions))
	require.Zero(t, sessions, "no LISTEN session")
}

// Mode off: every answer is read from Postgres.
func TestCacheModeOff(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.cache.Mode = config.CacheOff })
	save(t, b.db, freeCustomer("cus_1", "u_1"))
	for range 3 {
		require.Equal(t, false, b.getJSON(t, "/v1/users/u_1/entitlement", http.StatusOK)["premium"])
	}
	require.Equal(t, "off", b.getJSON(t, "/readyz", http.StatusOK)["cache"])
	require.Zero(t, counter(t, b.reg, "tollgate_queryapi_cache_hits_total"))
	require.Zero(t, b.app.cache.len())
}

// The size an entry is charged is close to the heap it holds, for answers decoded as Postgres
// rows are (every string its own allocation): the budget means what it says. Not parallel, so
// that the heap it measures is its own.
//
//nolint:paralleltest // measures the heap
func TestCacheSizeEstimate(t *testing.T) {
	const n = 20_000
	g := newGatedReader()
	close(g.release)
	c := newCache(g, modeNotify, time.Hour, 1<<30, testMetrics(t))
	c.setListening(true)
	row, err := json.Marshal(entitlement.UserAnswer(benchUser("u_0")))
	require.NoError(t, err)
	before := heapInUse()
	answers := make([]keyedAnswer, n)
	for i := range answers {
		var v entitlement.Answer
		require.NoError(t, json.Unmarshal(row, &v)) // fresh strings, like a scan
		id := fmt.Sprintf("u_%d", 1_000_000+i)
		v.UserID = &id
		a, err := newAnswer(v)
		require.NoError(t, err)
		answers[i] = keyedAnswer{userKey(id), a}
	}
	w := &gatedWarmer{started: make(chan struct{}), release: make(chan struct{}), answers: answers}
	close(w.release)
	c.startWarm(context.Background(), w, n, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.wait()
	w.answers = nil // the cache holds the only references now (answers is not used again)
	used := heapInUse() - before
	require.Equal(t, n, c.len())
	ratio := float64(c.size()) / float64(used)
	t.Logf("%d entries: estimated %d bytes, heap grew %d bytes (estimate/heap %.2f); %d bytes of JSON each",
		n, c.size(), used, ratio, len(anyAnswer(c).body))
	require.InDelta(t, 1, ratio, 0.35, "estimate within 35 %% of the heap")
	runtime.KeepAlive(c)
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// anyAnswer is any one answer the cache holds.
func anyAnswer(c *cache) *answer {
	for i := range c.shards {
		for _, e := range c.shards[i].entries {
			return e.a
		}
	}
	return &answer{}
}

// benchUser is a premium user with one customer and one subscription, like the benchmark's rows.
func benchUser(id string) entitlement.User {
	c := premiumCustomer()
	u := entitlement.Merge([]entitlement.Customer{c})
	u.UserID = id
	u.UpdatedAt = time.Date(2026, 11, 22, 10, 0, 0, 123_000_000, time.UTC)
	return u
}
