package main

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/processor/internal/console"
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

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`) //nolint:gochecknoglobals // test-only pattern

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
