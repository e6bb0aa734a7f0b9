package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// startProcessor builds the real processor (../processor) into a temp dir and runs it against
// natsURL and databaseURL until the test ends (SIGTERM, then a wait).
func startProcessor(t *testing.T, natsURL, databaseURL string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "processor")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "../processor")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ../processor:\n%s", out)

	logs := &syncBuffer{}
	cmd := exec.Command(bin) //nolint:noctx // stopped with SIGTERM in Cleanup, as a supervisor would
	cmd.Env = []string{"HTTP_ADDR=127.0.0.1:0", "NATS_URL=" + natsURL, "DATABASE_URL=" + databaseURL, "PATH=" + os.Getenv("PATH")}
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

// Some of a customer's events arrived by webhook, the others only through the backfill; the real
// processor derives the right read model from both.
func TestBackfillThenProcessorGivesTheRightReadModel(t *testing.T) {
	t.Parallel()
	b := setupBackfill(t, stripetest.Faults{Every429: 2, RetryAfter: 1})
	db := pgtest.New(t)
	startProcessor(t, b.nats.URL(), db.URL)

	at := time.Now().Add(-2 * time.Hour).Unix()
	type step struct {
		id, typ, sub, customer, status string
		webhook                        bool
	}
	steps := []step{
		{"evt_rm_1", "customer.subscription.created", "sub_rm_a", "cus_rm_a", "active", true},
		{"evt_rm_2", "customer.subscription.updated", "sub_rm_a", "cus_rm_a", "past_due", false}, // missed
		{"evt_rm_3", "customer.subscription.created", "sub_rm_b", "cus_rm_b", "trialing", false}, // missed
		{"evt_rm_4", "customer.subscription.updated", "sub_rm_b", "cus_rm_b", "active", false},   // missed
		{"evt_rm_5", "customer.subscription.created", "sub_rm_c", "cus_rm_c", "active", true},
		{"evt_rm_6", "customer.subscription.deleted", "sub_rm_c", "cus_rm_c", "canceled", false}, // missed
		{"evt_rm_7", "customer.subscription.created", "sub_rm_d", "cus_rm_d", "incomplete", true},
		{"evt_rm_8", "customer.subscription.updated", "sub_rm_d", "cus_rm_d", "active", true},
	}
	for i, s := range steps {
		raw := stripetest.Event{ID: s.id, Type: s.typ, Created: at + int64(i)*60,
			Object: stripetest.Subscription(s.sub, s.customer, s.status, "price_pro")}.JSON(t)
		b.fake.AddEvent(t, raw, s.webhook)
		if s.webhook {
			resp := stripetest.Deliver(t, b.url, raw, testSecret)
			require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
		}
	}

	status := func(customer string) string {
		v, err := entitlement.GetCustomer(t.Context(), db.Pool, customer)
		if errors.Is(err, entitlement.ErrNotFound) {
			return "(none)"
		}
		require.NoError(t, err)
		return v.Status
	}
	waitFor(t, 30*time.Second, "the webhooks applied", func() bool {
		return status("cus_rm_a") == "active" && status("cus_rm_c") == "active" && status("cus_rm_d") == "active"
	})
	require.Equal(t, "(none)", status("cus_rm_b"), "no webhook of cus_rm_b arrived")

	c := b.backfill(t, t.Context(), "--since", "3h")
	require.NoError(t, c.err)
	require.Equal(t, counts{Listed: 8, New: 4, AlreadyHad: 4}, summaryCounts(t, c.stdout))

	want := map[string]string{"cus_rm_a": "past_due", "cus_rm_b": "active", "cus_rm_c": "canceled", "cus_rm_d": "active"}
	waitFor(t, 30*time.Second, "the backfilled events applied", func() bool {
		for cus, st := range want {
			if status(cus) != st {
				return false
			}
		}
		return true
	})
	v, err := entitlement.GetCustomer(t.Context(), db.Pool, "cus_rm_c")
	require.NoError(t, err)
	require.False(t, v.Premium)
	require.Equal(t, "evt_rm_6", v.LastEventID)
	v, err = entitlement.GetCustomer(t.Context(), db.Pool, "cus_rm_a")
	require.NoError(t, err)
	require.True(t, v.Premium, "past_due grants by default")
	require.Equal(t, "evt_rm_2", v.LastEventID)
}
