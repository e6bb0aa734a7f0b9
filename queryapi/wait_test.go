package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/queryapi/client"
)

// waiting waits until a request of the instance waits for a write.
func waiting(t *testing.T, b *bundle) {
	t.Helper()
	require.Eventually(t, func() bool { return b.app.waits.n.Load() > 0 }, 5*time.Second, 5*time.Millisecond)
}

// apply writes customer rows, their users and marks in one transaction, as the processor does.
func apply(t *testing.T, b *bundle, marks []entitlement.Mark, cs ...entitlement.Customer) {
	t.Helper()
	require.NoError(t, pgx.BeginFunc(context.Background(), b.db.Pool, func(tx pgx.Tx) error {
		if err := entitlement.RecordMarks(context.Background(), tx, marks); err != nil {
			return err
		}
		if err := entitlement.SaveCustomers(context.Background(), tx, cs); err != nil {
			return err
		}
		var users []scope.Key
		for _, c := range cs {
			if c.UserID != "" {
				users = append(users, c.Scope.Of(c.UserID))
			}
		}
		return entitlement.RefreshUsers(context.Background(), tx, users)
	}))
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.waitListening(t)
	free := freeCustomer("cus_123", "u_42")
	apply(t, b, []entitlement.Mark{{ID: "evt_1", Customer: scope.Key{ID: "cus_123"}}}, free)

	t.Run("invalid", func(t *testing.T) {
		for path, param := range map[string]string{
			"/v1/users/u_42/entitlement?wait_for=sub_1":                "wait_for",
			"/v1/users/u_42/entitlement?wait_for=evt_1&timeout=11s":    "timeout",
			"/v1/users/u_42/entitlement?wait_for=evt_1&timeout=banana": "timeout",
			"/v1/customers/cus_123/entitlement?timeout=1s":             "timeout",
		} {
			m := b.getJSON(t, path, http.StatusBadRequest)
			e := m["error"].(map[string]any)
			require.Equal(t, "invalid_parameter", e["code"], path)
			require.Contains(t, e["message"], param, path)
		}
	})
	t.Run("already applied", func(t *testing.T) {
		rec := b.get(t, "/v1/customers/cus_123/entitlement?wait_for=evt_1", testToken)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Empty(t, rec.Header().Get(waitHeader))
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		rec := b.get(t, "/v1/users/u_42/entitlement?wait_for=evt_never&timeout=300ms", testToken)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Equal(t, "timeout", rec.Header().Get(waitHeader))
		require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
		rec = b.get(t, "/v1/users/u_nobody/entitlement?wait_for=cs_never&timeout=100ms", testToken)
		require.Equal(t, http.StatusNotFound, rec.Code)
		require.Equal(t, "timeout", rec.Header().Get(waitHeader))
	})
	t.Run("wakes on the write", func(t *testing.T) {
		done := make(chan *http.Response, 1)
		go func() {
			rec := serveGet(t, b.srv, "/v1/users/u_42/entitlement?wait_for=cs_test_1&timeout=8s", testToken)
			done <- rec.Result()
		}()
		waiting(t, b)
		paid := premiumCustomer()
		paid.LastEventID = "evt_2"
		apply(t, b, []entitlement.Mark{{ID: "evt_2", Customer: scope.Key{ID: "cus_123"}}, {ID: "cs_test_1", Customer: scope.Key{ID: "cus_123"}}}, paid)
		select {
		case resp := <-done:
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Empty(t, resp.Header.Get(waitHeader), "answered by the write, not the 8 s timeout")
		case <-time.After(10 * time.Second):
			t.Fatal("the waiting request did not answer")
		}
	})
}

// Without notifications (mode max-age, as on a hot standby, which refuses LISTEN) a waiter polls
// the marks, and the answer it then gets is read again, not the cached one from before the write.
func TestWaitForWithoutNotifications(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.cache.Mode, o.cache.MaxAge = config.CacheMaxAge, time.Hour })
	save(t, b.db, freeCustomer("cus_123", "u_42"))
	require.Equal(t, false, b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)["premium"]) // now cached for an hour

	done := make(chan *http.Response, 1)
	go func() {
		done <- serveGet(t, b.srv, "/v1/users/u_42/entitlement?wait_for=cs_test_1&timeout=8s", testToken).Result()
	}()
	waiting(t, b)
	apply(t, b, []entitlement.Mark{{ID: "cs_test_1", Customer: scope.Key{ID: "cus_123"}}}, premiumCustomer())
	select {
	case resp := <-done:
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Empty(t, resp.Header.Get(waitHeader), "answered by the write, not the 8 s timeout")
		var got map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		require.Equal(t, true, got["premium"], "the answer after the write, not the cached one")
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting request did not answer")
	}
	require.Equal(t, true, b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)["premium"], "the cache holds the new answer")
}

func TestWaitForCheckoutClient(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	cb.waitListening(t)
	c := cb.client()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err := c.WaitForCheckout(ctx, "u_42", "cs_test_9")
	require.ErrorIs(t, err, client.ErrNotFound, "unknown user after the wait")

	type result struct {
		e   client.Entitlement
		err error
	}
	done := make(chan result, 1)
	go func() {
		e, err := c.WaitForCheckout(t.Context(), "u_42", "cs_test_9")
		done <- result{e, err}
	}()
	waiting(t, cb.bundle)
	paid := premiumCustomer()
	apply(t, cb.bundle, []entitlement.Mark{{ID: "cs_test_9", Customer: scope.Key{ID: paid.CustomerID}}}, paid)
	r := <-done
	require.NoError(t, r.err)
	require.True(t, r.e.Premium)
}

type fakeMarks struct{}

func (fakeMarks) applied(context.Context, string, key) (bool, error) {
	return false, errors.New("never")
}

type off struct{}

func (off) On() bool { return false }

func TestWaitForIsBounded(t *testing.T) {
	t.Parallel()
	srv := newServer(serverDeps{failOpen: off{}, tokens: []string{testToken}, logger: slog.New(slog.DiscardHandler),
		metrics: testMetrics(t), waits: newWaiters(fakeMarks{}, 0, 1, nil)})
	rec := serveGet(t, srv, "/v1/users/u_42/entitlement?wait_for=evt_1&timeout=1s", testToken)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Contains(t, rec.Body.String(), `"overloaded"`)
}
