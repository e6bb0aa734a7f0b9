package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/queryapi/client"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// inScope is c moved to scope sc (its subscriptions keep their customer).
func inScope(c entitlement.Customer, sc scope.Scope) entitlement.Customer {
	c.Scope = sc
	return c
}

// The same user id in live and test mode, on the platform and in two connected accounts: each
// scope is answered from its own rows alone, and an id of one scope is 404 in another.
func TestEachScopeAnswersOnItsOwn(t *testing.T) {
	t.Parallel()
	b := setup(t) // QUERYAPI_LIVEMODE false here (the zero config)
	acctA, acctB := scope.Scope{Livemode: true, Account: "acct_A1"}, scope.Scope{Livemode: true, Account: "acct_B2"}
	save(t, b.db,
		inScope(freeCustomer("cus_live", "u_42"), scope.Live()),
		inScope(premiumCustomer(), scope.Scope{}), // cus_123, test mode
		inScope(premiumCustomer(), acctA),         // the same ids in a connected account
		inScope(freeCustomer("cus_b", "u_42"), acctB),
	)
	tests := []struct {
		name, query string
		premium     bool
		customers   []any
		livemode    bool
		account     any
	}{
		{"default: this server's mode (test)", "", true, []any{"cus_123"}, false, nil},
		{"test mode", "?livemode=false", true, []any{"cus_123"}, false, nil},
		{"live mode", "?livemode=true", false, []any{"cus_live"}, true, nil},
		{"connected account A", "?livemode=true&account=acct_A1", true, []any{"cus_123"}, true, "acct_A1"},
		{"connected account B", "?account=acct_B2&livemode=true", false, []any{"cus_b"}, true, "acct_B2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := b.getJSON(t, "/v1/users/u_42/entitlement"+tt.query, http.StatusOK)
			require.Equal(t, tt.premium, m["premium"])
			require.Equal(t, tt.customers, m["customer_ids"])
			require.Equal(t, tt.livemode, m["livemode"])
			require.Equal(t, tt.account, m["account"])
		})
	}
	b.getJSON(t, "/v1/users/u_42/entitlement?account=acct_A1", http.StatusNotFound) // acct_A1 has no test-mode rows
	b.getJSON(t, "/v1/users/u_42/entitlement?livemode=false&account=acct_C3", http.StatusNotFound)
	m := b.getJSON(t, "/v1/customers/cus_live/entitlement?livemode=true", http.StatusOK)
	require.Equal(t, true, m["livemode"])
	b.getJSON(t, "/v1/customers/cus_live/entitlement", http.StatusNotFound)            // a live customer asked in test mode
	b.getJSON(t, "/v1/customers/cus_b/entitlement?livemode=true", http.StatusNotFound) // acct_B2's customer asked on the platform
	b.getJSON(t, "/v1/customers/cus_b/entitlement?livemode=true&account=acct_A1", http.StatusNotFound)
	m = b.getJSON(t, "/v1/customers/cus_123/entitlement?livemode=true&account=acct_A1", http.StatusOK)
	require.Equal(t, "acct_A1", m["account"])
}

func TestScopeParametersAreValidated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tt := range []struct{ query, names string }{
		{"?livemode=yes", "livemode"},
		{"?livemode=", "livemode"},
		{"?livemode=true&livemode=false", "livemode"},
		{"?account=cus_1", "account"},
		{"?account=", "account"},
		{"?account=acct_1%20x", "account"},
		{"?account=acct_1&account=acct_2", "account"},
	} {
		for _, path := range []string{"/v1/users/u_42/entitlement", "/v1/customers/cus_123/entitlement"} {
			m := b.getJSON(t, path+tt.query, http.StatusBadRequest)
			e, _ := m["error"].(map[string]any)
			require.Equal(t, "invalid_parameter", e["code"], tt.query)
			require.Contains(t, e["message"], tt.names, tt.query)
		}
	}
}

// QUERYAPI_LIVEMODE's default is true: a request without livemode is answered from live mode.
func TestDefaultModeIsLive(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	cfg, err := config.LoadQueryAPI(getenv(map[string]string{"HTTP_ADDR": "127.0.0.1:0", "DATABASE_URL": db.URL, "QUERYAPI_TOKENS": testToken}))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	a, err := startApp(context.Background(), cfg, defaultOptions(), newTestLogger(&logBuffer{}), reg)
	require.NoError(t, err)
	t.Cleanup(a.close)
	b := &bundle{db: db, app: a, srv: a.handler, reg: reg}
	b.saveSettled(t, inScope(premiumCustomer(), scope.Scope{})) // a test-mode subscription of u_42
	b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusNotFound)
	// Settled: the live change's notification has dropped the cached 404 before the next read.
	b.saveSettled(t, inScope(freeCustomer("cus_live", "u_42"), scope.Live()))
	m := b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)
	require.Equal(t, false, m["premium"], "the test-mode subscription grants nothing live")
	require.Equal(t, true, m["livemode"])
}

// The cache follows each scope's notifications: a change in test mode leaves the cached live answer
// alone, a change in live mode replaces it.
func TestCacheInvalidatesTheChangedScopeOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.cache.MaxAge = time.Hour })
	b.saveSettled(t, inScope(premiumCustomer(), scope.Live()), inScope(freeCustomer("cus_123", "u_42"), scope.Scope{}))
	live := "/v1/users/u_42/entitlement?livemode=true"
	require.Equal(t, true, b.getJSON(t, live, http.StatusOK)["premium"])
	require.Equal(t, false, b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)["premium"])

	hits := counter(t, b.reg, "tollgate_queryapi_cache_hits_total")
	b.saveSettled(t, inScope(premiumCustomer(), scope.Scope{})) // test mode turns premium
	require.Equal(t, true, b.getJSON(t, "/v1/users/u_42/entitlement", http.StatusOK)["premium"], "test mode's key was invalidated")
	require.Equal(t, true, b.getJSON(t, live, http.StatusOK)["premium"])
	require.Greater(t, counter(t, b.reg, "tollgate_queryapi_cache_hits_total"), hits, "the live answer stayed cached")

	b.saveSettled(t, inScope(freeCustomer("cus_123", "u_42"), scope.Live())) // live mode loses it
	require.Equal(t, false, b.getJSON(t, live, http.StatusOK)["premium"], "live mode's key was invalidated")
}

// The client asks the scope it was made for.
func TestClientAsksItsScope(t *testing.T) {
	t.Parallel()
	cb := setupClient(t)
	save(t, cb.db,
		inScope(premiumCustomer(), scope.Live()),
		inScope(freeCustomer("cus_t", "u_42"), scope.Scope{}),
		inScope(premiumCustomer(), scope.Scope{Livemode: false, Account: "acct_A1"}),
	)
	ctx := t.Context()
	for _, tt := range []struct {
		name    string
		opts    []client.Option
		premium bool
		live    bool
		account string
	}{
		{"server default (test here)", nil, false, false, ""},
		{"live", []client.Option{client.WithLivemode(true)}, true, true, ""},
		{"test", []client.Option{client.WithLivemode(false)}, false, false, ""},
		{"connected account", []client.Option{client.WithAccount("acct_A1"), client.WithLivemode(false)}, true, false, "acct_A1"},
	} {
		e, err := cb.client(tt.opts...).Entitlement(ctx, "u_42")
		require.NoError(t, err, tt.name)
		require.Equal(t, tt.premium, e.Premium, tt.name)
		require.Equal(t, tt.live, e.Livemode, tt.name)
		require.Equal(t, tt.account, e.Account, tt.name)
	}
	_, err := cb.client(client.WithAccount("acct_A1"), client.WithLivemode(true)).Entitlement(ctx, "u_42")
	require.ErrorIs(t, err, client.ErrNotFound)
	_, err = cb.client(client.WithAccount("nope")).Entitlement(ctx, "u_42")
	var apiErr *client.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, "invalid_parameter", apiErr.Code)
}
