package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/syncbuf"
	"github.com/tollgate/tollgate/testkit/wait"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// runProcessorBinary builds ../processor and runs it against natsURL and databaseURL (and the
// variables of env, "NAME=value") until the test ends; it fails the test if the processor exits
// on its own.
func runProcessorBinary(t *testing.T, natsURL, databaseURL string, env ...string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "processor")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../processor").CombinedOutput()
	require.NoError(t, err, "go build ../processor:\n%s", out)
	logs := &syncbuf.Buffer{}
	cmd := exec.Command(bin) //nolint:noctx // stopped with SIGTERM in Cleanup
	// STREAM_RETAIN_APPLIED=0: applied events leave the stream at once (the default keeps them
	// for a failover's lost commits), which the tests check as a sign they were settled.
	cmd.Env = append([]string{"HTTP_ADDR=127.0.0.1:0", "NATS_URL=" + natsURL, "DATABASE_URL=" + databaseURL, "PATH=" + os.Getenv("PATH"),
		"STREAM_RETAIN_APPLIED=0"}, env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				t.Errorf("processor exited with %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("processor did not stop within 30s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("processor logs:\n%s", logs.String())
		}
	})
}

// Every hostile input (the hostile-input catalogue) through the real listener and the real processor (embedded
// JetStream, real Postgres): each is refused with its code or applied harmlessly, and the good
// event sent after each one is applied.
func TestPipelineSurvivesHostileInputs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	db := pgtest.NewEmpty(t)
	runProcessorBinary(t, b.nats.URL(), db.URL)

	long := strings.Repeat("x", 5000)
	sub := func(n int, customer string, edit func(map[string]any)) map[string]any {
		o := stripetest.Subscription(fmt.Sprintf("sub_pl_%d", n), customer, "active", "price_pro")
		if edit != nil {
			edit(o)
		}
		return o
	}
	event := func(e stripetest.Event) []byte { return e.JSON(t) }
	now := time.Now()
	tests := []struct {
		name   string
		raw    []byte
		header func([]byte) string // nil: signed now
		status int
		code   string
	}{
		{"5,000-byte customer id", event(stripetest.Event{ID: "evt_pl_1", Type: "customer.subscription.updated", Object: sub(1, "cus_"+long, nil)}), nil, 400, "invalid_payload"},
		{"5,000-byte type", event(stripetest.Event{ID: "evt_pl_2", Type: long, Object: sub(2, "cus_pl_2", nil)}), nil, 400, "invalid_payload"},
		{"created INT64_MAX", event(stripetest.Event{ID: "evt_pl_3", Type: "customer.subscription.updated", Created: 1<<63 - 1, Object: sub(3, "cus_pl_3", nil)}), nil, 400, "invalid_payload"},
		{"created in year 10000", event(stripetest.Event{ID: "evt_pl_4", Type: "customer.subscription.updated", Created: 253402300800, Object: sub(4, "cus_pl_4", nil)}), nil, 400, "invalid_payload"},
		{"signature ten years ahead", event(stripetest.Event{ID: "evt_pl_5", Type: "customer.subscription.updated", Object: sub(5, "cus_pl_5", nil)}),
			func(raw []byte) string { return stripetest.SignAt(raw, now.AddDate(10, 0, 0), testSecret) }, 400, "timestamp_outside_tolerance"},
		{"NUL in the id", event(stripetest.Event{ID: "evt_\x00", Type: "customer.subscription.updated", Object: sub(6, "cus_pl_6", nil)}), nil, 400, "invalid_payload"},
		{"10 KB id", event(stripetest.Event{ID: strings.Repeat("e", 10_000), Type: "customer.subscription.updated", Object: sub(7, "cus_pl_7", nil)}), nil, 400, "invalid_payload"},
		{"placeholder created 1234567890 is fine", event(stripetest.Event{ID: "evt_pl_8", Type: "customer.subscription.updated", Created: 1234567890, Object: sub(8, "cus_pl_8", nil)}), nil, 200, ""},
		{"year-10000 current_period_end: applied, clamped", event(stripetest.Event{ID: "evt_pl_9", Type: "customer.subscription.updated",
			Object: sub(9, "cus_pl_9", func(o map[string]any) { o["current_period_end"] = int64(253402300800) })}), nil, 200, ""},
		{"INT64_MAX trial_end: applied, clamped", event(stripetest.Event{ID: "evt_pl_10", Type: "customer.subscription.updated",
			Object: sub(10, "cus_pl_10", func(o map[string]any) { o["trial_end"] = int64(1<<63 - 1) })}), nil, 200, ""},
	}
	var goods []string
	for i, tt := range tests {
		header := stripetest.Sign(tt.raw, testSecret)
		if tt.header != nil {
			header = tt.header(tt.raw)
		}
		resp := stripetest.Post(t, b.url, tt.raw, header)
		if tt.code != "" {
			requireError(t, resp, tt.status, tt.code)
		} else {
			require.Equal(t, tt.status, resp.Status, "%s: %s", tt.name, resp.Body)
		}
		customer := fmt.Sprintf("cus_pl_good_%d", i)
		good := event(stripetest.Event{ID: fmt.Sprintf("evt_pl_good_%d", i), Type: "customer.subscription.updated", Object: sub(100+i, customer, nil)})
		require.Equal(t, http.StatusOK, stripetest.Deliver(t, b.url, good, testSecret).Status, "the good event after %s", tt.name)
		goods = append(goods, customer)
	}

	all := append(goods, "cus_pl_8", "cus_pl_9", "cus_pl_10")
	wait.For(t, 60*time.Second, "every good customer is applied", func() bool {
		for _, c := range all {
			got, err := entitlement.GetCustomer(t.Context(), db.Pool, scope.Key{ID: c}) // test mode, the platform: stripetest's events
			if err != nil || got.Status != "active" {
				return false
			}
		}
		return true
	})
	for _, c := range []string{"cus_pl_9", "cus_pl_10"} {
		got, err := entitlement.GetCustomer(t.Context(), db.Pool, scope.Key{ID: c}) // test mode, the platform: stripetest's events
		require.NoError(t, err)
		body, err := json.Marshal(got)
		require.NoError(t, err)
		require.Contains(t, string(body), "9999-12-31T23:59:59Z", c)
	}
	wait.For(t, 10*time.Second, "applied events leave the stream", func() bool { return b.msgCount(t) == 0 })
	var deadLetters int
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM dead_letters`).Scan(&deadLetters))
	require.Zero(t, deadLetters)
}
