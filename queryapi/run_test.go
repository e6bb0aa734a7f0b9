package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/pgtest"
)

func TestConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no tokens", map[string]string{}, []string{"QUERYAPI_TOKENS is required"}},
		{"blank tokens", map[string]string{"QUERYAPI_TOKENS": " , "}, []string{"QUERYAPI_TOKENS is required"}},
		{"bad database url", map[string]string{"QUERYAPI_TOKENS": "t", "DATABASE_URL": "mysql://x"}, []string{"DATABASE_URL"}},
		{"both", map[string]string{"DATABASE_URL": "nonsense"}, []string{"QUERYAPI_TOKENS", "DATABASE_URL"}},
		{"bad address", map[string]string{"QUERYAPI_TOKENS": "t", "HTTP_ADDR": "127.0.0.1:99999"}, []string{"HTTP_ADDR"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			env := tt.env
			if _, ok := env["DATABASE_URL"]; !ok {
				env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1"
			}
			err := run(t.Context(), []string{"queryapi"}, getenv(env), &stdout, &stderr)
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"queryapi", "frobnicate"}, getenv(nil), &stdout, &stderr)
	require.ErrorIs(t, err, errUsage)
	require.ErrorContains(t, err, `unknown command "frobnicate"`)

	err = run(t.Context(), []string{"queryapi", "fail-open", "sideways"}, getenv(nil), &stdout, &stderr)
	require.ErrorIs(t, err, errUsage)

	require.NoError(t, run(t.Context(), []string{"queryapi", "help"}, getenv(nil), &stdout, &stderr))
	require.Contains(t, stdout.String(), "fail-open on|off|status")
}

// TestRunServesAndStops runs the program as main does: it serves on a free port, answers, and
// on cancellation stops cleanly with a nil error (exit 0). healthcheck asks its /readyz.
func TestRunServesAndStops(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	save(t, db, premiumCustomer())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &logBuffer{}
	env := getenv(map[string]string{"HTTP_ADDR": "127.0.0.1:0", "DATABASE_URL": db.URL, "QUERYAPI_TOKENS": testToken,
		"QUERYAPI_LIVEMODE": "false"}) // the rows below are test mode's
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"queryapi"}, env, io.Discard, stderr) }()

	var addr string
	require.Eventually(t, func() bool {
		for _, l := range stderr.lines(t, "queryapi serving") {
			addr, _ = l["addr"].(string)
		}
		return addr != ""
	}, 10*time.Second, 10*time.Millisecond)

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/users/u_42/entitlement", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := client.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var m map[string]any
	require.NoError(t, json.Unmarshal(body, &m))
	require.Equal(t, true, m["premium"])

	require.NoError(t, run(ctx, []string{"queryapi", "healthcheck"}, getenv(map[string]string{"HTTP_ADDR": addr}), io.Discard, io.Discard))

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
	require.NotEmpty(t, stderr.lines(t, "queryapi stopped"))
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		require.True(t, json.Valid([]byte(l)), "every log line is JSON: %s", l)
	}
}

func TestHealthcheckFailsWhenNothingServes(t *testing.T) {
	t.Parallel()
	err := run(t.Context(), []string{"queryapi", "healthcheck"}, getenv(map[string]string{"HTTP_ADDR": "127.0.0.1:1"}), io.Discard, io.Discard)
	require.Error(t, err)
	require.NotErrorIs(t, err, errUsage)
}
