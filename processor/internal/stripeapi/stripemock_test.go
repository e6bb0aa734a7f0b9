package stripeapi_test

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/syncbuf"
)

// stripeMock is stripe-mock's module and version: Stripe's OpenAPI spec served with fixture
// data, refusing requests whose parameters the spec does not allow.
const stripeMock = "github.com/stripe/stripe-mock@v0.203.0"

// startStripeMock runs stripe-mock (`go run`, compiled once into the build cache) on a free port
// and returns its base URL once it answers; it is stopped in t.Cleanup. The first run compiles
// it, hence the long deadline.
func startStripeMock(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())

	logs := &syncbuf.Buffer{}
	cmd := exec.Command("go", "run", stripeMock, "-http-port", strconv.Itoa(port)) //nolint:noctx // its process group is stopped in Cleanup
	cmd.Dir = t.TempDir()                                                          // outside the workspace: the module proxy's stripe-mock
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // go run's child is stopped with it
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("stripe-mock output:\n%s", logs.String())
		}
	})

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(4 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/events", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer sk_test_123")
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, "stripe-mock answers GET /v1/events")
			return base
		}
		select {
		case <-exited:
			t.Fatalf("stripe-mock exited before answering:\n%s", logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("stripe-mock did not answer within 4 minutes:\n%s", logs.String())
		}
	}
}

// The requests backfill and reconcile send are valid for Stripe's API (stripe-mock refuses
// unknown or malformed parameters with a 400) and its pages decode.
func TestStripeRequestsAgainstStripeMock(t *testing.T) {
	t.Parallel()
	base := startStripeMock(t)
	api := stripeapi.New(config.StripeAPI{Key: "sk_test_123", Base: base}, stripeapi.Options{MaxAttempts: 1})
	t.Cleanup(api.Close)

	now := time.Now().Unix()
	queries := map[string]stripeapi.EventQuery{
		"plain": {},
		"every filter": {CreatedGTE: now - 72*3600, CreatedLTE: now, Undelivered: true,
			Types: []string{"customer.subscription.updated", "customer.deleted"}, StartingAfter: "evt_1"},
	}
	for name, q := range queries {
		var n int
		for raw, err := range api.Events(t.Context(), q) {
			require.NoError(t, err, name)
			ev, err := stripeevent.Parse(raw)
			require.NoError(t, err, "%s: %s", name, raw)
			require.NotEmpty(t, ev.ID)
			n++
		}
		require.Positive(t, n, name)
	}

	for _, customer := range []string{"", "cus_123"} {
		var n int
		for s, err := range api.Subscriptions(t.Context(), customer) {
			require.NoError(t, err)
			require.NotEmpty(t, s.ID)
			require.NotEmpty(t, s.CustomerID)
			require.NotEmpty(t, s.Status)
			n++
		}
		require.Positive(t, n)
	}

	// The fake's shape is stripe-mock's: a parameter Stripe does not know is refused by both.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/events?delivered=false", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer sk_test_123")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
}
