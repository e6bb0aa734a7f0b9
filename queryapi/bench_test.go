package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

const (
	benchConcurrency = 64
	benchUsers       = 1000
)

// BenchmarkEntitlementCheck measures the read path the web app uses: GET
// /v1/users/{id}/entitlement with a bearer token, over real HTTP/1.1 keep-alive connections on
// loopback, 64 at once, against the real server (net/http with the production timeouts, the
// read-only pool, the cache and its LISTEN session) over a read model of 1000 users. In the
// same run it measures a bare echo handler that answers fixed JSON of the same size, and
// reports both and their ratio. One op is one request.
//
//	go test -run='^$' -bench=EntitlementCheck -count=1 ./queryapi
func BenchmarkEntitlementCheck(b *testing.B) {
	benchmarkEntitlementCheck(b, defaultOptions().cache.MaxAge)
}

// BenchmarkEntitlementCheckNoCache is the same with a cache that keeps nothing (max age 0): one
// query per request, except that concurrent requests for one id share a query. It is the
// reason the cache exists.
func BenchmarkEntitlementCheckNoCache(b *testing.B) {
	benchmarkEntitlementCheck(b, 0)
}

func benchmarkEntitlementCheck(b *testing.B, cacheMaxAge time.Duration) {
	db := pgtest.New(b)
	fillReadModel(b, db, benchUsers)
	cfg := config.QueryAPI{DatabaseURL: db.URL, Tokens: []string{testToken}}
	reg := prometheus.NewRegistry()
	opts := defaultOptions()
	opts.cache.MaxAge = cacheMaxAge
	a, err := startApp(context.Background(), cfg, opts, slog.New(slog.NewJSONHandler(io.Discard, nil)), reg)
	require.NoError(b, err)
	b.Cleanup(a.close)
	require.Eventually(b, a.cache.listening, 5*time.Second, 5*time.Millisecond)

	paths := make([][]byte, benchUsers)
	for i := range paths {
		paths[i] = []byte(fmt.Sprintf("/v1/users/u_%d/entitlement", i))
	}
	sample := serveGet(b, a.handler, string(paths[0]), testToken)
	require.Equal(b, http.StatusOK, sample.Code)
	for _, p := range paths { // fill the cache one key at a time
		require.Equal(b, http.StatusOK, serveGet(b, a.handler, string(p), testToken).Code)
	}

	realAddr := serveLoopback(b, a.handler)
	bareAddr := serveLoopback(b, bareEcho(sample.Body.Bytes()))
	realGen := newLoadGenerator(b, realAddr, paths, benchConcurrency)
	bareGen := newLoadGenerator(b, bareAddr, paths, benchConcurrency)
	bareGen.run(b, 20*benchUsers) // warm: connections, and the real server's cache and pool
	realGen.run(b, 20*benchUsers)

	b.StopTimer()
	bare := bareGen.run(b, b.N)
	realGen.run(b, 5*benchUsers) // entries unused during the bare run have expired
	misses := counter(b, reg, "tollgate_queryapi_cache_misses_total")
	b.ResetTimer()
	b.StartTimer()
	res := realGen.run(b, b.N)
	b.StopTimer()
	misses = counter(b, reg, "tollgate_queryapi_cache_misses_total") - misses

	b.ReportMetric(res.rps(), "req/s")
	b.ReportMetric(res.percentile(50), "p50-ms")
	b.ReportMetric(res.percentile(99), "p99-ms")
	b.ReportMetric(bare.rps(), "bare-req/s")
	b.ReportMetric(bare.percentile(99), "bare-p99-ms")
	b.ReportMetric(res.rps()/bare.rps(), "ratio")
	b.ReportMetric(100*(1-misses/float64(b.N)), "hit-%")
}

// BenchmarkEntitlementCheckSpread measures checks at three spreads of users over one read model
// of 200,000 users, with the production cache settings (64 MiB, max age 5 min): a hot set of
// 1,000 users, 20,000 users read uniformly at random, and all 200,000 read uniformly at random,
// which outgrows the budget. Each sub-benchmark runs the same b.N requests against a
// bare echo handler answering a real answer's bytes, in the same run, and reports both and their
// ratios (x-bare, p99-x-bare); the uniform ones also report their rate over the hot set's
// (x-hot). Every key of a set (up to 50,000) is read once before it is measured. The 200,000 row also
// reports the cache's estimated bytes after the run, which the budget bounds.
//
//	go test -run='^$' -bench=EntitlementCheckSpread -count=1 ./queryapi
func BenchmarkEntitlementCheckSpread(b *testing.B) {
	const users = 200_000
	db := pgtest.New(b)
	fillReadModelSQL(b, db, users)
	cfg := config.QueryAPI{DatabaseURL: db.URL, Tokens: []string{testToken}}
	reg := prometheus.NewRegistry()
	opts := defaultOptions()
	a, err := startApp(context.Background(), cfg, opts, slog.New(slog.NewJSONHandler(io.Discard, nil)), reg)
	require.NoError(b, err)
	b.Cleanup(a.close)
	require.Eventually(b, a.cache.listening, 5*time.Second, 5*time.Millisecond)
	require.Eventually(b, func() bool { return a.cache.len() > 0 }, 30*time.Second, 5*time.Millisecond)
	a.cache.wait() // the warm read at start, done before anything is measured

	paths := make([][]byte, users)
	for i := range paths {
		paths[i] = []byte(fmt.Sprintf("/v1/users/u_%d/entitlement", i))
	}
	sample := serveGet(b, a.handler, string(paths[0]), testToken)
	require.Equal(b, http.StatusOK, sample.Code)
	realAddr := serveLoopback(b, a.handler)
	bareAddr := serveLoopback(b, bareEcho(sample.Body.Bytes()))
	bareGen := newLoadGenerator(b, bareAddr, paths[:1000], benchConcurrency)
	bareGen.run(b, 20_000) // warm the connections

	var hotRate float64
	for _, set := range []struct {
		name string
		n    int
	}{{"hot-1000", 1000}, {"uniform-20000", 20_000}, {"uniform-200000", users}} {
		// Every key once (up to 50,000: the cache holds what fits), as a running instance would
		// have seen them, straight through the handler so that none is left out; then the
		// connections and the pool.
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < min(set.n, 50_000); i += 8 {
					if rec := serveGet(b, a.handler, string(paths[i]), testToken); rec.Code != http.StatusOK {
						b.Errorf("%s: %d", paths[i], rec.Code)
						return
					}
				}
			})
		}
		wg.Wait()
		gen := newLoadGenerator(b, realAddr, paths[:set.n], benchConcurrency).randomly()
		gen.run(b, 5000)
		b.Run(set.name, func(b *testing.B) {
			misses := counter(b, reg, "tollgate_queryapi_cache_misses_total")
			b.ResetTimer()
			res := gen.run(b, b.N)
			b.StopTimer()
			misses = counter(b, reg, "tollgate_queryapi_cache_misses_total") - misses
			bare := bareGen.run(b, b.N)
			b.ReportMetric(res.rps(), "req/s")
			b.ReportMetric(res.percentile(50), "p50-ms")
			b.ReportMetric(res.percentile(99), "p99-ms")
			b.ReportMetric(bare.rps(), "bare-req/s")
			b.ReportMetric(bare.percentile(99), "bare-p99-ms")
			b.ReportMetric(res.rps()/bare.rps(), "x-bare")
			b.ReportMetric(res.percentile(99)/bare.percentile(99), "p99-x-bare")
			b.ReportMetric(100*(1-misses/float64(b.N)), "hit-%")
			if set.n == 1000 {
				hotRate = res.rps()
			} else if hotRate > 0 {
				b.ReportMetric(res.rps()/hotRate, "x-hot")
			}
			if set.n == users {
				b.ReportMetric(float64(a.cache.size())/(1<<20), "cache-MiB")
				require.LessOrEqual(b, a.cache.size(), opts.cache.Bytes, "within the budget")
			}
		})
	}
}

// fillReadModelSQL writes n premium users u_0… with one customer cus_0… each, in two statements
// (the processor's path, as fillReadModel takes, would spend minutes on 200,000 users). The rows
// have the shape SaveCustomers and RefreshUsers write.
func fillReadModelSQL(tb testing.TB, db *pgtest.DB, n int) {
	tb.Helper()
	const subs = `jsonb_build_array(jsonb_build_object('id', 'sub_' || i, 'customer_id', 'cus_' || i,
		'status', 'active', 'price_ids', jsonb_build_array('price_1'), 'product_ids', jsonb_build_array('prod_1'),
		'current_period_end', '2026-12-22T10:00:00Z', 'cancel_at_period_end', false, 'trial_end', null, 'ended_at', null))`
	for _, stmt := range []string{
		`INSERT INTO customer_entitlements (customer_id, user_id, premium, status, features, subscriptions,
			last_event_id, last_event_created)
		SELECT 'cus_' || i, 'u_' || i, true, 'active', '{premium}', ` + subs + `, 'evt_' || i, '2026-11-22T10:00:00Z'
		FROM generate_series(0, $1::int - 1) AS i`,
		`INSERT INTO user_entitlements (user_id, customer_ids, premium, status, features, subscriptions,
			last_event_id, last_event_created)
		SELECT 'u_' || i, ARRAY['cus_' || i], true, 'active', '{premium}', ` + subs + `, 'evt_' || i, '2026-11-22T10:00:00Z'
		FROM generate_series(0, $1::int - 1) AS i`,
	} {
		_, err := db.Pool.Exec(context.Background(), stmt, n)
		require.NoError(tb, err)
	}
	_, err := db.Pool.Exec(context.Background(), `ANALYZE customer_entitlements, user_entitlements`)
	require.NoError(tb, err)
}

// fillReadModel writes n users u_0… with one customer each, every other one premium.
func fillReadModel(tb testing.TB, db *pgtest.DB, n int) {
	tb.Helper()
	for start := 0; start < n; start += 500 {
		var cs []entitlement.Customer
		var users []scope.Key
		for i := start; i < min(n, start+500); i++ {
			c := premiumCustomer()
			c.CustomerID, c.UserID = fmt.Sprint("cus_", i), fmt.Sprint("u_", i)
			c.Subscriptions[0].CustomerID = c.CustomerID
			if i%2 == 1 {
				c = freeCustomer(c.CustomerID, c.UserID)
			}
			cs = append(cs, c)
			users = append(users, scope.Key{ID: c.UserID})
		}
		require.NoError(tb, entitlement.SaveCustomers(context.Background(), db.Pool, cs))
		require.NoError(tb, entitlement.RefreshUsers(context.Background(), db.Pool, users))
	}
}

// bareEcho is the baseline: echo answering fixed JSON on the same route, with nothing else.
func bareEcho(body []byte) http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/v1/users/:user_id/entitlement", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, body)
	})
	return e
}

// serveLoopback serves h on a loopback port with the production server settings until the
// benchmark ends.
func serveLoopback(tb testing.TB, h http.Handler) string {
	tb.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // ErrServerClosed after Close
	}()
	tb.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// loadGenerator is a small HTTP/1.1 load generator: one goroutine per keep-alive connection,
// each sending prepared GET requests and reading whole answers, like wrk.
type loadGenerator struct {
	conns []*genConn
}

type genConn struct {
	c    net.Conn
	r    *bufio.Reader
	reqs [][]byte
	next int
	rnd  *rand.Rand // when set, each request is of a path drawn at random, not the next one
	lat  []time.Duration
}

func newLoadGenerator(tb testing.TB, addr string, paths [][]byte, concurrency int) *loadGenerator {
	tb.Helper()
	// One set of requests for every connection, prepared before any connection is opened (the
	// server closes a connection that sends nothing within its ReadHeaderTimeout).
	reqs := make([][]byte, 0, len(paths))
	for _, p := range paths {
		reqs = append(reqs, slices.Concat([]byte("GET "), p,
			[]byte(" HTTP/1.1\r\nHost: "+addr+"\r\nAuthorization: Bearer "+testToken+"\r\nUser-Agent: tollgate-bench\r\n\r\n")))
	}
	return newRequestGenerator(tb, addr, reqs, concurrency)
}

// postRequests are POST requests of path i with JSON body i, for newRequestGenerator.
func postRequests(addr string, paths []string, bodies []string) [][]byte {
	reqs := make([][]byte, len(paths))
	for i, p := range paths {
		reqs[i] = []byte("POST " + p + " HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + testToken +
			"\r\nUser-Agent: tollgate-bench\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(bodies[i])) + "\r\n\r\n" + bodies[i])
	}
	return reqs
}

// newRequestGenerator is a load generator sending the prepared raw HTTP/1.1 requests reqs.
func newRequestGenerator(tb testing.TB, addr string, reqs [][]byte, concurrency int) *loadGenerator {
	tb.Helper()
	g := &loadGenerator{}
	for i := range concurrency {
		c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", addr)
		require.NoError(tb, err)
		tb.Cleanup(func() { _ = c.Close() })
		// Connections start spread over the paths, not all on the same id.
		gc := &genConn{c: c, r: bufio.NewReaderSize(c, 16<<10), reqs: reqs, next: i * len(reqs) / concurrency}
		g.conns = append(g.conns, gc)
	}
	return g
}

// loadResult is what one run measured.
type loadResult struct {
	n       int
	elapsed time.Duration
	lat     []time.Duration // sorted
}

func (r loadResult) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r loadResult) percentile(p int) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	i := min(len(r.lat)-1, len(r.lat)*p/100)
	return float64(r.lat[i]) / float64(time.Millisecond)
}

// randomly makes every connection draw each request's path uniformly at random: a walk in
// order would be a cyclic scan, the worst case of any LRU-like cache that cannot hold it all.
func (g *loadGenerator) randomly() *loadGenerator {
	for i, gc := range g.conns {
		gc.rnd = rand.New(rand.NewPCG(uint64(i), 17))
	}
	return g
}

// run sends n requests in total over all connections and waits for every answer. Every answer
// must be 200.
func (g *loadGenerator) run(tb testing.TB, n int) loadResult {
	tb.Helper()
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	errs := make(chan error, len(g.conns))
	start := time.Now()
	for _, gc := range g.conns {
		gc.lat = gc.lat[:0]
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := gc.roundTrip(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		require.NoError(tb, err)
	}
	res := loadResult{n: n, elapsed: elapsed}
	for _, gc := range g.conns {
		res.lat = append(res.lat, gc.lat...)
	}
	slices.Sort(res.lat)
	return res
}

func (gc *genConn) roundTrip() error {
	req := gc.reqs[gc.next%len(gc.reqs)]
	gc.next++
	if gc.rnd != nil {
		req = gc.reqs[gc.rnd.IntN(len(gc.reqs))]
	}
	t0 := time.Now()
	if _, err := gc.c.Write(req); err != nil {
		return err
	}
	status, err := readAnswer(gc.r)
	if err != nil {
		return err
	}
	gc.lat = append(gc.lat, time.Since(t0))
	if status != http.StatusOK {
		return fmt.Errorf("status %d", status)
	}
	return nil
}

var errNoContentLength = errors.New("answer without Content-Length")

// readAnswer reads one HTTP/1.1 answer with a Content-Length and returns its status.
func readAnswer(r *bufio.Reader) (int, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		const cl = "content-length:"
		if len(line) > len(cl) && bytes.EqualFold(line[:len(cl)], []byte(cl)) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(line[len(cl):]))); err != nil {
				return 0, fmt.Errorf("bad %q", line)
			}
		}
	}
	if length < 0 {
		return 0, errNoContentLength
	}
	_, err = r.Discard(length)
	return status, err
}

// The load generator counts what it sends and reads whole answers.
func TestLoadGenerator(t *testing.T) {
	t.Parallel()
	var served atomic.Int64
	addr := serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		_, _ = w.Write([]byte(`{"premium":true}`))
	}))
	g := newLoadGenerator(t, addr, [][]byte{[]byte("/a"), []byte("/b")}, 4)
	res := g.run(t, 1000)
	require.EqualValues(t, 1000, served.Load())
	require.Len(t, res.lat, 1000)
	require.Positive(t, res.rps())
	require.LessOrEqual(t, res.percentile(50), res.percentile(99))
}
