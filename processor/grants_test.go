package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/audit"
	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/processor/internal/admin"
	"github.com/tollgate/tollgate/processor/internal/console"
	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/projection"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func adminDo(tb testing.TB, h http.Handler, method, path, token, body string) (int, map[string]any) {
	tb.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(tb.Context(), method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	h.ServeHTTP(rec, req)
	var m map[string]any
	require.NoError(tb, json.Unmarshal(rec.Body.Bytes(), &m), "%s", rec.Body.String())
	return rec.Code, m
}

// The admin API's grants, through the real router: give (recorded with the token's name),
// refusals that say why, list, revoke once.
func TestAdminGrants(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	proj := &projection.Projector{DB: db.Pool, Rules: subscription.DefaultRules()}
	const token = "tok_ops_0123456789abcdef"
	admins := []config.AdminToken{{Name: "root", Token: "tok_root_0123456789abc"}, {Name: "ops", Token: token}}
	h := admin.With(http.NotFoundHandler(), admins, db.Pool, proj, slog.New(slog.DiscardHandler))

	code, g := adminDo(t, h, http.MethodPost, "/admin/v1/grants", token,
		`{"user_id": "u_42", "livemode": true, "account": null, "features": ["premium"], "limits": {"projects": 5}, "until": "2099-01-31T00:00:00Z", "reason": "support comp"}`)
	require.Equal(t, http.StatusCreated, code, "%v", g)
	require.Equal(t, "ops", g["by"])
	require.Regexp(t, `^grt_`, g["id"])
	require.Equal(t, "2099-01-31T00:00:00Z", g["until"])
	u, err := entitlement.GetUser(t.Context(), db.Pool, scope.Live().Of("u_42"))
	require.NoError(t, err)
	require.True(t, u.Premium)
	require.Equal(t, map[string]int64{"projects": 5}, u.Limits)
	// The grant's names are flags for the query API's OpenFeature endpoint from now on.
	cat, err := catalogue.Load(t.Context(), db.Pool)
	require.NoError(t, err)
	kind, ok := cat.Kind("projects")
	require.True(t, ok, "a grant's limit is in the flag catalogue")
	require.Equal(t, catalogue.KindLimit, kind)
	kind, ok = cat.Kind("premium")
	require.True(t, ok, "a grant's feature is in the flag catalogue")
	require.Equal(t, catalogue.KindFeature, kind)

	for name, body := range map[string]string{
		"until in the past":  `{"user_id": "u_1", "features": ["premium"], "until": "2001-01-01T00:00:00Z", "reason": "x"}`,
		"nothing given":      `{"user_id": "u_1", "features": [], "reason": "x"}`,
		"no reason":          `{"user_id": "u_1", "features": ["premium"]}`,
		"an unknown field":   `{"user_id": "u_1", "features": ["premium"], "reason": "x", "expires": "soon"}`,
		"a fractional limit": `{"user_id": "u_1", "limits": {"projects": 1.5}, "reason": "x"}`,
		"not JSON":           `grant me`,
		"no body":            ``,
	} {
		code, m := adminDo(t, h, http.MethodPost, "/admin/v1/grants", token, body)
		require.Equal(t, http.StatusBadRequest, code, name)
		require.NotEmpty(t, m["error"].(map[string]any)["message"], "%s: a 4xx says why", name)
	}

	code, list := adminDo(t, h, http.MethodGet, "/admin/v1/users/u_42/grants?livemode=true", token, "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, list["grants"], 1)
	code, list = adminDo(t, h, http.MethodGet, "/admin/v1/users/u_42/grants?livemode=false", token, "")
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, list["grants"], "another scope")

	id := g["id"].(string)
	code, ended := adminDo(t, h, http.MethodDelete, "/admin/v1/grants/"+id, token, `{"reason": "refunded"}`)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "revoked", ended["ended_why"])
	require.Equal(t, "refunded", ended["ended_reason"])
	_, err = entitlement.GetUser(t.Context(), db.Pool, scope.Live().Of("u_42"))
	require.ErrorIs(t, err, entitlement.ErrNotFound, "the user's only grant ended")
	code, _ = adminDo(t, h, http.MethodDelete, "/admin/v1/grants/"+id, token, "")
	require.Equal(t, http.StatusConflict, code)
	code, _ = adminDo(t, h, http.MethodDelete, "/admin/v1/grants/grt_nope", token, "")
	require.Equal(t, http.StatusNotFound, code)

	// Every change is in the audit log with the token's name, the refused ones too.
	entries, err := audit.List(t.Context(), db.Pool, 100, 0)
	require.NoError(t, err)
	var actions []string
	for _, e := range entries {
		require.Equal(t, "ops", e.Actor)
		require.Equal(t, audit.ViaAPI, e.Via)
		actions = append(actions, e.Action+" "+e.Outcome)
	}
	require.Contains(t, actions, "POST /admin/v1/grants "+audit.OutcomeOK)
	require.Contains(t, actions, "DELETE /admin/v1/grants/"+id+" "+audit.OutcomeOK)
	require.Contains(t, actions, "DELETE /admin/v1/grants/grt_nope HTTP 404")
}

// The expiry service ends a grant at its until with no request, and two of them running at once
// expire it once. (The 2 s bound is measured end to end: e2e TestGrants.)
func TestGrantExpiry(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	proj := &projection.Projector{DB: db.Pool, Rules: subscription.DefaultRules()}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	until := time.Now().Add(1500 * time.Millisecond)
	g, err := operate.GiveGrant(ctx, proj, grant.New{Scope: scope.Live(), UserID: "u_exp", Features: []string{"premium"},
		Until: &until, Reason: "trial extension", By: "ops"}, time.Now())
	require.NoError(t, err)
	expired := make(chan time.Time, 4)
	for range 2 {
		e := &operate.GrantExpiry{Proj: proj, Q: db.Pool, Log: slog.New(slog.DiscardHandler), Batch: 10, MaxWait: 500 * time.Millisecond,
			Expired: func(gs []grant.Grant) { expired <- time.Now() }}
		go e.Run(ctx)
	}
	at := <-expired
	require.False(t, at.Before(until), "not before its until")
	_, err = entitlement.GetUser(ctx, db.Pool, g.User())
	require.ErrorIs(t, err, entitlement.ErrNotFound)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM grant_log WHERE grant_id = $1 AND action = 'expired'`, g.ID).Scan(&n))
	require.Equal(t, 1, n, "two expiry services, one expiry")
}

// The console's grant form on the user page: a POST without the session's CSRF token is refused;
// with it the grant is given (recorded with the session's token name), listed on the page with
// who gave it and why, and revoked by its button; both changes are in the audit log.
func TestConsoleGrants(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	proj := &projection.Projector{DB: db.Pool, Rules: subscription.DefaultRules()}
	const token = "tok_console_0123456789"
	h := console.With(http.NotFoundHandler(), console.Deps{Admins: []config.AdminToken{{Name: "ops", Token: token}},
		Pool: db.Pool, Proj: proj, Rules: proj.Rules, Log: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ck, csrf := consoleLogin(t, srv.URL, token)
	post := func(path, form string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, strings.NewReader(form))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
		resp, err := noFollow().Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp
	}
	form := "features=premium,+export&limits=projects%3D5&until=&reason=support+comp"
	require.Equal(t, http.StatusForbidden, post("/admin/users/u_c/grants?livemode=true", form).StatusCode, "no CSRF token")
	_, err := entitlement.GetUser(t.Context(), db.Pool, scope.Live().Of("u_c"))
	require.ErrorIs(t, err, entitlement.ErrNotFound, "nothing given without the token")

	resp := post("/admin/users/u_c/grants?livemode=true", form+"&csrf="+url.QueryEscape(csrf))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Location"), "done=")
	u, err := entitlement.GetUser(t.Context(), db.Pool, scope.Live().Of("u_c"))
	require.NoError(t, err)
	require.Equal(t, []string{"export", "premium"}, u.Features)
	require.Equal(t, map[string]int64{"projects": 5}, u.Limits)
	require.Equal(t, "ops", u.Grants[0].By)

	code, body := consoleGet(t, srv.URL+"/admin/users/u_c?livemode=true", ck)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, u.Grants[0].ID)
	require.Contains(t, body, "support comp")
	require.Contains(t, body, u.Grants[0].ID+" by ops until revoked: support comp", "the timeline's why")

	resp = post("/admin/users/u_c/grants/"+u.Grants[0].ID+"/revoke?livemode=true", "reason=done&csrf="+url.QueryEscape(csrf))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, err = entitlement.GetUser(t.Context(), db.Pool, scope.Live().Of("u_c"))
	require.ErrorIs(t, err, entitlement.ErrNotFound)

	entries, err := audit.List(t.Context(), db.Pool, 100, 0)
	require.NoError(t, err)
	var actions []string
	for _, e := range entries {
		require.Equal(t, "ops", e.Actor)
		actions = append(actions, e.Action+" "+e.Outcome)
	}
	require.Contains(t, actions, "POST /admin/users/u_c/grants "+audit.OutcomeOK)
	require.Contains(t, actions, "POST /admin/users/u_c/grants/"+u.Grants[0].ID+"/revoke "+audit.OutcomeOK)
}
