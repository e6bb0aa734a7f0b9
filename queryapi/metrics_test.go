package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.saveSettled(t, premiumCustomer())
	b.get(t, "/v1/users/u_42/entitlement", testToken)
	b.get(t, "/v1/users/u_42/entitlement", testToken)
	b.get(t, "/v1/users/u_nobody/entitlement", testToken)
	b.get(t, "/v1/users/u_42/entitlement", "")
	b.get(t, "/nothing", "")

	rec := b.get(t, "/metrics", "")
	require.Equal(t, http.StatusOK, rec.Code, "metrics need no token")
	text := rec.Body.String()
	for _, want := range []string{
		`tollgate_queryapi_request_duration_seconds_bucket{route="/v1/users/:user_id/entitlement",status="200",le="0.005"}`,
		`tollgate_queryapi_request_duration_seconds_count{route="/v1/users/:user_id/entitlement",status="200"} 2`,
		`tollgate_queryapi_request_duration_seconds_count{route="/v1/users/:user_id/entitlement",status="404"} 1`,
		`tollgate_queryapi_request_duration_seconds_count{route="/v1/users/:user_id/entitlement",status="401"} 1`,
		`status="404"`,
		"tollgate_queryapi_fail_open 0",
		"tollgate_queryapi_cache_hits_total ",
		"tollgate_queryapi_cache_misses_total ",
		"tollgate_queryapi_cache_refreshes_total ",
		"tollgate_queryapi_cache_entries ",
		"tollgate_queryapi_cache_listening 1",
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, "u_42", "ids never become label values")
	require.NotContains(t, text, "/nothing")

	hits, _ := metricValue(t, b.reg, "tollgate_queryapi_cache_hits_total", nil)
	misses, _ := metricValue(t, b.reg, "tollgate_queryapi_cache_misses_total", nil)
	require.GreaterOrEqual(t, hits, 1.0)
	require.GreaterOrEqual(t, misses, 2.0)
}
