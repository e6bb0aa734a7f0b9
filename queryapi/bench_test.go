package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	benchmarkEntitlementCheck(b, defaultOptions().cacheMaxAge)
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
	opts.cacheMaxAge = cacheMaxAge
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
	lat  []time.Duration
}

func newLoadGenerator(tb testing.TB, addr string, paths [][]byte, concurrency int) *loadGenerator {
	tb.Helper()
	g := &loadGenerator{}
	for i := range concurrency {
		c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", addr)
		require.NoError(tb, err)
		tb.Cleanup(func() { _ = c.Close() })
		// Connections start spread over the paths, not all on the same id.
		gc := &genConn{c: c, r: bufio.NewReaderSize(c, 16<<10), next: i * len(paths) / concurrency}
		for _, p := range paths {
			gc.reqs = append(gc.reqs, slices.Concat([]byte("GET "), p,
				[]byte(" HTTP/1.1\r\nHost: "+addr+"\r\nAuthorization: Bearer "+testToken+"\r\nUser-Agent: tollgate-bench\r\n\r\n")))
		}
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
