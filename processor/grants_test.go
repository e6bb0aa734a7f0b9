package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/catalogue"
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
	const token = "ops:tok_ops_0123456789abcdef"
	h := admin.With(http.NotFoundHandler(), []string{token}, db.Pool, proj, slog.New(slog.DiscardHandler))

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
// with it the grant is given (recorded with the token's name), listed on the page with who gave
// it and why, and revoked by its button.
func TestConsoleGrants(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	proj := &projection.Projector{DB: db.Pool, Rules: subscription.DefaultRules()}
	const token = "ops:tok_console_0123456789"
	h := console.With(http.NotFoundHandler(), console.Deps{Tokens: []string{token}, Pool: db.Pool, Proj: proj,
		Rules: proj.Rules, Log: slog.New(slog.DiscardHandler)})
	post := func(path, form string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: console.ConsoleCookie, Value: token})
		h.ServeHTTP(rec, req)
		return rec
	}
	form := "features=premium,+export&limits=projects%3D5&until=&reason=support+comp"
	require.Equal(t, http.StatusForbidden, post("/admin/users/u_c/grants?livemode=true", form).Code, "no CSRF token")
	_, err := entitlement.GetUser(t.Context(), db.Pool, scope.Live().Of("u_c"))
	require.ErrorIs(t, err, entitlement.ErrNotFound, "nothing given without the token")

	rec := post("/admin/users/u_c/grants?livemode=true", form+"&csrf="+console.Csrf(token))
	require.Equal(t, http.StatusSeeOther, rec.Code)
	require.Contains(t, rec.Header().Get("Location"), "done=")
	u, err := entitlement.GetUser(t.Context(), db.Pool, scope.Live().Of("u_c"))
	require.NoError(t, err)
	require.Equal(t, []string{"export", "premium"}, u.Features)
	require.Equal(t, map[string]int64{"projects": 5}, u.Limits)
	require.Equal(t, "ops", u.Grants[0].By)

	page := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/admin/users/u_c?livemode=true", nil)
	req.AddCookie(&http.Cookie{Name: console.ConsoleCookie, Value: token})
	h.ServeHTTP(page, req)
	require.Equal(t, http.StatusOK, page.Code)
	body := page.Body.String()
	require.Contains(t, body, u.Grants[0].ID)
	require.Contains(t, body, "support comp")
	require.Contains(t, body, u.Grants[0].ID+" by ops until revoked: support comp", "the timeline's why")

	rec = post("/admin/users/u_c/grants/"+u.Grants[0].ID+"/revoke?livemode=true", "reason=done&csrf="+console.Csrf(token))
	require.Equal(t, http.StatusSeeOther, rec.Code)
	_, err = entitlement.GetUser(t.Context(), db.Pool, scope.Live().Of("u_c"))
	require.ErrorIs(t, err, entitlement.ErrNotFound)
}
