package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/natsproc"
	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// Through the real services (listener, processor, query API, nats-server, Postgres): the same
// user id subscribes in test mode, on the live platform (then cancels) and in a connected
// account. Each scope answers from its own events only, and the development stack's default
// is test mode.
func TestScopesThroughTheServices(t *testing.T) {
	t.Parallel()
	binDir, natsBin := buildBinaries(t)
	st, _ := startSharedStack(t, binDir, natsBin, "scopes", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	send := func(sc scope.Scope, ev scenario.Event) {
		t.Helper()
		var m map[string]any
		require.NoError(t, json.Unmarshal(ev.Payload, &m))
		m["livemode"] = sc.Livemode
		if sc.Account != "" {
			m["account"] = sc.Account
		}
		body, err := json.Marshal(m)
		require.NoError(t, err)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.URL(stack.Listener)+"/webhooks/stripe", bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Stripe-Signature", scenario.Sign(body, st.WebhookSecret))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	get := func(path string) (int, map[string]any) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.URL(stack.QueryAPI)+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+st.Token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}

	test, live, acct := scope.Scope{}, scope.Live(), scope.Scope{Livemode: true, Account: "acct_E2E1"}
	start := time.Now().Add(-time.Hour).Unix()
	// One user id, u_scope1, in three scopes; each customer's id is its own (as Stripe's are).
	for i, sc := range []scope.Scope{test, live, acct} {
		c := scenario.NewCustomer(fmt.Sprintf("scope%d_", i), 1)
		c.UserID = "u_scope1"
		steps := c.Lifecycle(time.Unix(start, 0))
		n := 4 // up to active
		if sc == live {
			n = len(steps) // through canceled
		}
		for _, s := range steps[:n] {
			send(sc, s.Event)
		}
	}
	want := map[string]bool{
		"/v1/users/u_scope1/entitlement":                                 true, // the stack's default: test mode
		"/v1/users/u_scope1/entitlement?livemode=false":                  true,
		"/v1/users/u_scope1/entitlement?livemode=true":                   false,
		"/v1/users/u_scope1/entitlement?livemode=true&account=acct_E2E1": true,
	}
	wait.For(t, 60*time.Second, "every scope's answer", func() bool {
		for path, premium := range want {
			if status, m := get(path); status != http.StatusOK || m["premium"] != premium {
				return false
			}
		}
		_, m := get("/v1/users/u_scope1/entitlement?livemode=true")
		return m["status"] == "canceled"
	})
	_, m := get("/v1/users/u_scope1/entitlement?livemode=true&account=acct_E2E1")
	require.Equal(t, "acct_E2E1", m["account"])
	require.Equal(t, []any{"cus_scope2_1"}, m["customer_ids"], "only the account's customer")
	status, _ := get("/v1/users/u_scope1/entitlement?livemode=false&account=acct_E2E1")
	require.Equal(t, http.StatusNotFound, status, "the account has no test-mode events")
	status, _ = get("/v1/customers/cus_scope1_1/entitlement")
	require.Equal(t, http.StatusNotFound, status, "a live customer asked in test mode")
	status, m = get("/v1/users/u_scope1/entitlement?livemode=maybe")
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, fmt.Sprint(m["error"]), "livemode")
}

// startSharedStack starts a nats-server process and the three services on free ports, in a fresh
// database of the shared Postgres (dropped in t.Cleanup), with processorEnv added to the
// processor's environment. Everything stops in t.Cleanup.
func startSharedStack(t *testing.T, binDir, natsBin, name string, processorEnv map[string]string) (*stack.Stack, *natsproc.Server) {
	t.Helper()
	nats := natsproc.Start(t, natsBin)
	dbName := fmt.Sprintf("tollgate_%s_%d", name, time.Now().UnixNano())
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), pgtest.ServerURL()); err == nil {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
			_ = conn.Close(context.Background())
		}
	})
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := stack.Start(ctx, stack.Options{
		BinDir: binDir, DataDir: t.TempDir(), NATSURL: nats.URL(), DatabaseURL: pgtest.URLFor(t, dbName),
		ListenerAddr: addr(), QueryAPIAddr: addr(), ProcessorAddr: addr(), Log: servicesLog(t),
		ProcessorEnv: processorEnv,
	})
	require.NoError(t, err, "start the stack")
	t.Cleanup(func() { _ = st.Stop() })
	return st, nats
}
