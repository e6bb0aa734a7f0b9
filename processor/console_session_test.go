package main

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/audit"
	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/processor/internal/console"
	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/processortest"
	"github.com/tollgate/tollgate/processor/internal/projection"
)

// The console's admin tokens in the tests (ADMIN_TOKENS entries name:token, at least 16 characters).
const (
	consoleToken = "tok_console_0123456789"
	otherToken   = "tok_other_0123456789ab"
	consoleAdmin = "alice:" + consoleToken + ",bob:" + otherToken
)

// noFollow is a client that returns redirects as they are.
func noFollow() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// consoleLogin logs in at base with token as a browser does and returns the session cookie and
// the CSRF token of the session's forms.
func consoleLogin(t *testing.T, base, token string) (*http.Cookie, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/admin/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := noFollow().Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == console.ConsoleCookie {
			ck = c
		}
	}
	require.NotNil(t, ck, "the session cookie")
	code, body := consoleGet(t, base+"/admin/search", ck)
	require.Equal(t, http.StatusOK, code)
	m := csrfField.FindStringSubmatch(body)
	require.Len(t, m, 2, "a CSRF token on the page")
	return ck, m[1]
}

// consoleGet GETs target with the cookie (none when nil), not following redirects.
func consoleGet(t *testing.T, target string, ck *http.Cookie) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	require.NoError(t, err)
	if ck != nil {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	resp, err := noFollow().Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// The console's sessions, through the real server: the cookie is a random id (never the token,
// and no bearer token for the admin API) with __Host-, Secure, HttpOnly and SameSite=Strict;
// logout is a POST with the CSRF token and ends the session; repeated failed logins from one
// address get 429 with Retry-After and are logged without the token tried; a session ends when
// its token leaves ADMIN_TOKENS; every change is in the audit log with the token's name.
func TestConsoleSessions(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	s := bundleServeWithEnv(b, t, map[string]string{"ADMIN_TOKENS": consoleAdmin})

	ck, csrf := consoleLogin(t, s.base, consoleToken)
	require.True(t, strings.HasPrefix(ck.Name, "__Host-"))
	require.True(t, ck.Secure, "Secure")
	require.True(t, ck.HttpOnly, "HttpOnly")
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.Equal(t, "/", ck.Path)
	require.Empty(t, ck.Domain)
	require.NotContains(t, ck.Value, consoleToken, "the cookie is not the token")
	require.GreaterOrEqual(t, len(ck.Value), 43, "256 random bits")

	// The cookie is no bearer token for the admin API.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.base+"/admin/v1/users/u_x/timeline", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+ck.Value)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// A change, recorded with the token's name.
	post := func(path, form string, ck *http.Cookie) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.base+path, strings.NewReader(form))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if ck != nil {
			req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
		}
		resp, err := noFollow().Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode, resp.Header.Get("Location")
	}
	code, _ := post("/admin/fail-open", url.Values{"csrf": {csrf}, "on": {"true"}, "confirm": {"yes"}}.Encode(), ck)
	require.Equal(t, http.StatusSeeOther, code)
	code, body := consoleGet(t, s.base+"/admin/audit", ck)
	require.Equal(t, http.StatusOK, code)
	require.Regexp(t, `<td>alice</td><td>console</td><td><code>POST /admin/fail-open</code></td><td><code></code></td><td>ok</td>`, body)
	require.Contains(t, body, "<td>alice</td><td>console</td><td><code>login</code>")
	entries, err := audit.List(t.Context(), b.DB.Pool, 10, 0)
	require.NoError(t, err)
	require.Equal(t, "POST /admin/fail-open", entries[0].Action)
	require.Equal(t, "alice", entries[0].Actor)

	// Logout needs the CSRF token; then the session is over.
	code, _ = post("/admin/logout", "", ck)
	require.Equal(t, http.StatusForbidden, code, "a logout without the CSRF token (a cross-site form)")
	code, _ = consoleGet(t, s.base+"/admin/search", ck)
	require.Equal(t, http.StatusOK, code, "still signed in")
	code, to := post("/admin/logout", url.Values{"csrf": {csrf}}.Encode(), ck)
	require.Equal(t, http.StatusSeeOther, code)
	require.True(t, strings.HasPrefix(to, "/admin/"), to)
	code, _ = consoleGet(t, s.base+"/admin/search", ck)
	require.Equal(t, http.StatusSeeOther, code, "the cookie of an ended session opens nothing")

	// Failed logins: the 11th from one address within the window is 429 with Retry-After, even
	// with the right token; the log names the address, never a token tried.
	const guess = "guess-0123456789abcdef"
	for range 10 {
		code, _ := post("/admin/login", url.Values{"token": {guess}}.Encode(), nil)
		require.Equal(t, http.StatusUnauthorized, code)
	}
	req, err = http.NewRequestWithContext(t.Context(), http.MethodPost, s.base+"/admin/login", strings.NewReader(url.Values{"token": {consoleToken}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = noFollow().Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	logs := s.stderr.String()
	require.Contains(t, logs, "console login failed")
	require.Contains(t, logs, "too many failed logins")
	require.NotContains(t, logs, guess)
	require.NotContains(t, logs, consoleToken)
}

// A session ends when its token leaves ADMIN_TOKENS (the processor restarted without it), and
// a session of a token still there goes on.
func TestConsoleSessionEndsWithItsToken(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	first := bundleServeWithEnv(b, t, map[string]string{"ADMIN_TOKENS": consoleAdmin})
	alice, _ := consoleLogin(t, first.base, consoleToken)
	bob, _ := consoleLogin(t, first.base, otherToken)
	first.cancel()
	require.NoError(t, first.Wait(t))

	second := bundleServeWithEnv(b, t, map[string]string{"ADMIN_TOKENS": "bob:" + otherToken})
	code, _ := consoleGet(t, second.base+"/admin/search", alice)
	require.Equal(t, http.StatusSeeOther, code, "alice's token was removed")
	code, _ = consoleGet(t, second.base+"/admin/search", bob)
	require.Equal(t, http.StatusOK, code, "bob's is still configured")
}

// A crafted customer id cannot retarget the page's forms: they are built from the escaped id.
func TestConsoleFormActionsEscapeTheID(t *testing.T) {
	t.Parallel()
	b := processortest.Setup(t)
	s := bundleServeWithEnv(b, t, map[string]string{"ADMIN_TOKENS": consoleAdmin})
	ck, _ := consoleLogin(t, s.base, consoleToken)
	crafted := "../../dead-letters/1/redrive?x="
	_, body := consoleGet(t, s.base+"/admin/customers/"+url.PathEscape(crafted)+"?livemode=false", ck)
	require.Contains(t, body, `action="/admin/customers/..%2F..%2Fdead-letters%2F1%2Fredrive%3Fx=/replay?livemode=false"`)
	require.NotContains(t, body, `action="/admin/customers/../`)

	// The user page's grant form and revoke buttons too.
	proj := &projection.Projector{DB: b.DB.Pool, Rules: b.Rules}
	g, err := operate.GiveGrant(t.Context(), proj, grant.New{Scope: scope.Scope{}, UserID: crafted, Features: []string{"premium"},
		Reason: "escaping", By: "alice"}, time.Now())
	require.NoError(t, err)
	_, body = consoleGet(t, s.base+"/admin/users/"+url.PathEscape(crafted)+"?livemode=false", ck)
	require.Contains(t, body, `action="/admin/users/..%2F..%2Fdead-letters%2F1%2Fredrive%3Fx=/grants?livemode=false"`)
	require.Contains(t, body, `action="/admin/users/..%2F..%2Fdead-letters%2F1%2Fredrive%3Fx=/grants/`+g.ID+`/revoke?livemode=false"`)
	require.NotContains(t, body, `action="/admin/users/../`)
}
