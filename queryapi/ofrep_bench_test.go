package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
// once, every answer in the cache. Sub-benchmarks:
//
//   - entitlement-check: GET /v1/users/{id}/entitlement
//   - flag-evaluation:   POST /ofrep/v1/evaluate/flags/{key}, the key cycling through premium,
//     status, a feature and a limit
//   - bulk-evaluation:   POST /ofrep/v1/evaluate/flags (7 flags)
//
// One op is one request; allocations are the whole process's (server and load generator).
//
//	go test -run='^$' -bench=FlagEvaluation -benchmem -count=1 ./queryapi
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
		{"entitlement-check", newLoadGenerator(b, addr, gets, benchConcurrency)},
		{"flag-evaluation", newRequestGenerator(b, addr, postRequests(addr, flagPaths, bodies), benchConcurrency)},
		{"bulk-evaluation", newRequestGenerator(b, addr, postRequests(addr, bulkPaths, bodies), benchConcurrency)},
	}
	// Every answer read once (the cache), then the connections warmed.
	for i := range benchUsers {
		require.Equal(b, http.StatusOK, serveGet(b, a.handler, string(gets[i]), testToken).Code)
	}
	for _, g := range gens {
		g.gen.run(b, 5*benchUsers)
	}
	for _, g := range gens {
		b.Run(g.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			res := g.gen.run(b, b.N)
			b.StopTimer()
			b.ReportMetric(res.rps(), "req/s")
			b.ReportMetric(res.percentile(50), "p50-ms")
			b.ReportMetric(res.percentile(99), "p99-ms")
		})
	}
}
