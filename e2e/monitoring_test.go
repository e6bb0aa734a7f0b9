package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/testkit/wait"
)

// Every metric the alert rules (deploy/prometheus) and the dashboard (deploy/grafana) name is one
// the real services export: each service's /metrics, after a webhook went through and a query
// was answered, with the scheduled backfill on (its series exist only then).
func TestMonitoringNamesExportedMetrics(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	named := map[string][]string{} // metric -> files naming it
	metric := regexp.MustCompile(`\btollgate_[a-z0-9_]+\b`)
	for _, f := range []string{"deploy/prometheus/tollgate.rules.yml", "deploy/prometheus/tollgate.rules.test.yml", "deploy/grafana/tollgate.json"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		require.NoError(t, err)
		for _, m := range metric.FindAllString(string(b), -1) {
			if !slices.Contains(named[m], f) {
				named[m] = append(named[m], f)
			}
		}
	}
	require.NotEmpty(t, named)

	binDir, natsBin := buildBinaries(t)
	st, _ := startSharedStack(t, binDir, natsBin, "monitoring", map[string]string{
		"BACKFILL_INTERVAL": "1h", "STRIPE_API_KEY": "rk_test_monitoring", "STRIPE_API_BASE": "http://127.0.0.1:1",
		"NOTIFY_URLS": "http://127.0.0.1:1/hook", "NOTIFY_SECRET": "whsec_" + strings.Repeat("A", 32),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := scenario.NewCustomer("mon", 1)
	ev := c.CustomerCreated(time.Now().Unix())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, st.URL(stack.Listener)+"/webhooks/stripe", bytes.NewReader(ev.Payload))
	require.NoError(t, err)
	req.Header.Set("Stripe-Signature", scenario.Sign(ev.Payload, st.WebhookSecret))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	wait.For(t, time.Minute, "the event is applied", func() bool {
		return strings.Contains(scrape(ctx, t, st.URL(stack.Processor)), `tollgate_processor_messages_total{outcome="ack"}`)
	})
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, st.URL(stack.QueryAPI)+"/v1/users/"+c.UserID+"/entitlement", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+st.Token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()

	exported := map[string]bool{}
	for _, svc := range []string{stack.Listener, stack.Processor, stack.QueryAPI} {
		sc := bufio.NewScanner(strings.NewReader(scrape(ctx, t, st.URL(svc))))
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			// "# TYPE name kind" names every family; a histogram's samples add _bucket, _sum, _count.
			if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
				exported[f[2]] = true
				if f[3] == "histogram" || f[3] == "summary" {
					for _, s := range []string{"_bucket", "_sum", "_count"} {
						exported[f[2]+s] = true
					}
				}
			}
		}
	}
	for m, files := range named {
		require.True(t, exported[m], "%s names %s, which no service exports", strings.Join(files, ", "), m)
	}
}

// scrape is the text of a service's /metrics.
func scrape(ctx context.Context, t *testing.T, base string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}
