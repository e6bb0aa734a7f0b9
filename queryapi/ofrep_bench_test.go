package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// BenchmarkFlagEvaluation measures an OpenFeature flag evaluation beside the entitlement check
// it is built on, in one run against one instance: the real server over a read model of 1000
// users (as BenchmarkEntitlementCheck), real HTTP/1.1 keep-alive connections on loopback, 64 at
// once, every answer in the cache. Three kinds of request:
//
//   - check: GET /v1/users/{id}/entitlement
//   - flag:  POST /ofrep/v1/evaluate/flags/{key}, the key cycling through premium, status, a
//     feature and a limit
//   - bulk:  POST /ofrep/v1/evaluate/flags (7 flags)
//
// The kinds take turns in chunks of 1000 requests, so that the load of a shared machine, which
// drifts over seconds, weighs on each alike. One op is one request of each kind; each kind
// reports its time per request (wall time over the 64 connections: the inverse of its rate), its
// allocations and bytes per request (the whole process: server and load generator) and its
// p99, and flag-x-check is the ratio of the first two.
//
//	go test -run='^$' -bench=FlagEvaluation -count=1 ./queryapi
func BenchmarkFlagEvaluation(b *testing.B) {
	db := pgtest.New(b)
	fillReadModel(b, db, benchUsers)
	require.NoError(b, catalogue.Write(context.Background(), db.Pool, catalogue.SourcePlans,
		append(catalogue.Features("pro", "export", "sso"), catalogue.Limits("seats", "projects")...)))
	cfg := config.QueryAPI{DatabaseURL: db.URL, Tokens: []string{testToken}}
	a, err := startApp(context.Background(), cfg, defaultOptions(), slog.New(slog.NewJSONHandler(io.Discard, nil)), prometheus.NewRegistry())
	require.NoError(b, err)
	b.Cleanup(a.close)
	require.Eventually(b, a.cache.listening, 5*time.Second, 5*time.Millisecond)
	require.Eventually(b, func() bool { c, ok := a.flags.current(); return ok && c.Len() == 5 }, 5*time.Second, 5*time.Millisecond)
	addr := serveLoopback(b, a.handler)

	gets := make([][]byte, benchUsers)
	flagPaths, bulkPaths, bodies := make([]string, benchUsers), make([]string, benchUsers), make([]string, benchUsers)
	keys := []string{"premium", "status", "pro", "seats"}
	for i := range benchUsers {
		gets[i] = []byte(fmt.Sprintf("/v1/users/u_%d/entitlement", i))
		flagPaths[i] = "/ofrep/v1/evaluate/flags/" + keys[i%len(keys)]
		bulkPaths[i] = "/ofrep/v1/evaluate/flags"
		bodies[i] = fmt.Sprintf(`{"context":{"targetingKey":"u_%d"}}`, i)
	}
	gens := []struct {
		name string
		gen  *loadGenerator
	}{
		{"check", newLoadGenerator(b, addr, gets, benchConcurrency)},
		{"flag", newRequestGenerator(b, addr, postRequests(addr, flagPaths, bodies), benchConcurrency)},
		{"bulk", newRequestGenerator(b, addr, postRequests(addr, bulkPaths, bodies), benchConcurrency)},
	}
	// Every answer read once (the cache), then the connections warmed.
	for i := range benchUsers {
		require.Equal(b, http.StatusOK, serveGet(b, a.handler, string(gets[i]), testToken).Code)
	}
	for _, g := range gens {
		g.gen.run(b, 5*benchUsers)
	}
	type totals struct {
		elapsed        time.Duration
		mallocs, bytes uint64
		lat            []time.Duration
	}
	sums := make([]totals, len(gens))
	var before, after runtime.MemStats
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(1000, b.N-done)
		for i, g := range gens {
			runtime.ReadMemStats(&before)
			res := g.gen.run(b, n)
			runtime.ReadMemStats(&after)
			sums[i].elapsed += res.elapsed
			sums[i].mallocs += after.Mallocs - before.Mallocs
			sums[i].bytes += after.TotalAlloc - before.TotalAlloc
			sums[i].lat = append(sums[i].lat, res.lat...)
		}
		done += n
	}
	b.StopTimer()
	for i, g := range gens {
		slices.Sort(sums[i].lat)
		res := loadResult{n: b.N, elapsed: sums[i].elapsed, lat: sums[i].lat}
		b.ReportMetric(float64(sums[i].elapsed.Nanoseconds())/float64(b.N), g.name+"-ns/req")
		b.ReportMetric(float64(sums[i].mallocs)/float64(b.N), g.name+"-allocs/req")
		b.ReportMetric(float64(sums[i].bytes)/float64(b.N), g.name+"-B/req")
		b.ReportMetric(res.percentile(99), g.name+"-p99-ms")
	}
	b.ReportMetric(float64(sums[1].elapsed)/float64(sums[0].elapsed), "flag-x-check")
}
