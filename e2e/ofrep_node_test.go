package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/testkit/wait"
)

// TestOpenFeatureNode runs e2e/ofrep-node/test.mjs (node's test runner) with the official
// OpenFeature JavaScript SDK and OFREP provider against the real binaries: a subscription made
// active through the listener and the processor, then every flag kind, an unknown user, an
// unknown flag, a missing targeting key, a cancellation seen on the next evaluation and
// fail-open. It fails, never skips, without node; it runs `npm ci` there when the dependencies
// are not installed yet (.ci/run installs them first).
func TestOpenFeatureNode(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node (Node.js 20 or later) is needed to run the OpenFeature JavaScript SDK's test")
	dir := filepath.Join(repoRoot(t), "e2e", "ofrep-node")
	npmCI(t, dir)
	binDir, natsBin := buildBinaries(t)

	plans := filepath.Join(t.TempDir(), "plans.json")
	require.NoError(t, os.WriteFile(plans, []byte(`{"price_pro_monthly": ["pro"], "price_team": ["export", "pro"]}`), 0o600))
	st, _ := startSharedStack(t, binDir, natsBin, "ofrep", map[string]string{"PLANS_FILE": plans})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The processor records PLANS_FILE's feature names in the flag catalogue at start; a limit
	// name comes with a grant's limits (added here as a grant records it).
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	require.NoError(t, err)
	defer func() { _ = conn.Close(context.Background()) }()
	wait.For(t, 30*time.Second, "the processor's flag catalogue", func() bool {
		c, err := catalogue.Load(ctx, conn)
		return err == nil && slices.Equal(c.Names(), []string{"export", "pro"})
	})
	require.NoError(t, catalogue.Add(ctx, conn, catalogue.SourceGrant, catalogue.Limits("seats")))

	c := scenario.NewCustomer("ofrep", 1)
	steps := c.Lifecycle(time.Now().Add(-time.Hour))
	send := func(ev scenario.Event) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.URL(stack.Listener)+"/webhooks/stripe", bytes.NewReader(ev.Payload))
		require.NoError(t, err)
		req.Header.Set("Stripe-Signature", scenario.Sign(ev.Payload, st.WebhookSecret))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	for _, s := range steps[:4] { // up to active
		send(s.Event)
	}
	wait.For(t, 60*time.Second, "the user's subscription active in the query API", func() bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.URL(stack.QueryAPI)+"/v1/users/"+c.UserID+"/entitlement", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+st.Token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		var m map[string]any
		b, _ := io.ReadAll(resp.Body)
		return json.Unmarshal(b, &m) == nil && m["status"] == "active"
	})

	// The cancellation the Node test sends, signed now (within the listener's 5 min tolerance).
	cancelEv := steps[len(steps)-1].Event
	body := filepath.Join(t.TempDir(), "cancel.json")
	require.NoError(t, os.WriteFile(body, cancelEv.Payload, 0o600))

	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"TOLLGATE_QUERYAPI_URL="+st.URL(stack.QueryAPI),
		"TOLLGATE_TOKEN="+st.Token,
		"TOLLGATE_USER="+c.UserID,
		"TOLLGATE_LISTENER_URL="+st.URL(stack.Listener),
		"TOLLGATE_CHANGE_BODY="+body,
		"TOLLGATE_CHANGE_SIGNATURE="+scenario.Sign(cancelEv.Payload, st.WebhookSecret),
		"TOLLGATE_QUERYAPI_BIN="+filepath.Join(binDir, "queryapi"),
		"DATABASE_URL="+st.DatabaseURL,
	)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "node --test test.mjs:\n%s", out)
	t.Logf("node --test test.mjs:\n%s", out)
}

// npmCI installs the locked dependencies of the Node package in dir unless they are installed.
func npmCI(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil {
		return
	}
	npm, err := exec.LookPath("npm")
	require.NoError(t, err, "npm is needed to install the OpenFeature JavaScript SDK (npm ci in e2e/ofrep-node)")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "npm ci in %s:\n%s", dir, out)
}
