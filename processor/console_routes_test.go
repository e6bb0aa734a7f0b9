package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/httpx"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/processor/internal/processortest"
)

// GET /admin/login, the address left in the bar after a refused login, leads to the form; a
// method a console route does not serve is 405 with Allow, in the contract's error shape.
func TestConsoleRoutes(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	s := bundleServeWithEnv(b, t, map[string]string{"ADMIN_TOKENS": "tok_console_routes_0123"})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, s.base+path, strings.NewReader(""))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer tok_console_routes_0123") // the admin API's; the console ignores it
		resp, err := client.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}

	resp := do(http.MethodGet, "/admin/login")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/admin/", resp.Header.Get("Location"))

	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPut, "/admin/pipeline", "GET, HEAD"},
		{http.MethodDelete, "/admin/login", "GET, HEAD, POST"},
		{http.MethodGet, "/admin/dead-letters/evt_1/redrive", "POST"},
		{http.MethodPost, "/admin/v1/users/u_1/timeline", "GET, HEAD"},
	} {
		resp := do(tc.method, tc.path)
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", tc.method, tc.path)
		require.Equal(t, tc.allow, resp.Header.Get("Allow"), "%s %s", tc.method, tc.path)
		var body httpx.ErrorBody
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Equal(t, "method_not_allowed", body.Error.Code)
	}
}

// A customer page without ?livemode shows the customer in its own scope (a customer id names
// one), and a user page the user where it has an answer: here test mode, as `make run` and
// `stripe listen` produce, not the default live mode.
func TestConsolePagesShowTheirOwnScope(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	k := processortest.NewKit(t, "cscope")
	events := k.Signup("cus_CSC1", "u_csc", "sub_CSC1", "price_1", processortest.T0)
	b.Publish(t, events...)
	s := bundleServeWithEnv(b, t, map[string]string{"ADMIN_TOKENS": "tok_console_scope_0123"})
	processortest.CaughtUp(t, b.DB.Pool, processortest.Expect(t, b.Rules, events...), 20*time.Second)

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.base+"/admin/login", strings.NewReader(url.Values{"token": {"tok_console_scope_0123"}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	cookies := resp.Cookies()
	require.NotEmpty(t, cookies)
	get := func(path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.base+path, nil)
		require.NoError(t, err)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}

	code, html := get("/admin/customers/cus_CSC1")
	require.Equal(t, http.StatusOK, code, html)
	for _, raw := range events {
		ev, err := stripeevent.Parse(raw)
		require.NoError(t, err)
		require.Contains(t, html, ev.ID, "the timeline of the customer's own scope")
	}
	require.NotContains(t, html, "No stored events")
	code, html = get("/admin/users/u_csc")
	require.Equal(t, http.StatusOK, code, html)
	require.Contains(t, html, "/admin/customers/cus_CSC1?")
	require.Contains(t, html, `id="scopes"`, "the user in every scope with an answer")
	require.Contains(t, html, `id="premium"`, "the answer at a glance")
	require.Contains(t, html, `<details><summary>Raw JSON</summary>`, "the raw answer one click away")
	require.Contains(t, html, `class="legend"`, "changed rows explained")
	require.Regexp(t, `<time datetime="[^"]+Z" title="[^"]+Z">\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d UTC</time>`, html)
	code, html = get("/admin/search?q=u_csc")
	require.Equal(t, http.StatusOK, code, html)
	require.Contains(t, html, "/admin/customers/cus_CSC1?", "a user's search result links its customers")
}
