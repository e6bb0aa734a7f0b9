package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/httpx"
)

// isNotAllowed reports whether r is one of the routes that answer 405 (notAllowed).
func isNotAllowed(r *echo.Route) bool { return strings.Contains(r.Name, "notAllowed") }

// Every route answers a method it does not serve with 405, an Allow header listing the methods
// it does serve, and the contract's error body (code method_not_allowed), never 404.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	t.Parallel()
	b := startInstance(t, nil, "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
	param := regexp.MustCompile(`:([a-z_]+)`)
	served := map[string][]string{} // path -> methods
	for _, r := range b.app.handler.Routes() {
		if r.Method == echo.RouteNotFound || isNotAllowed(r) {
			continue
		}
		served[r.Path] = append(served[r.Path], r.Method)
	}
	require.NotEmpty(t, served)
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
	for route, allowed := range served {
		path := param.ReplaceAllString(route, "x_1")
		allowed = append(allowed, http.MethodOptions) // OPTIONS answers 204 with the same Allow
		slices.Sort(allowed)
		for _, m := range methods {
			if slices.Contains(allowed, m) && m != http.MethodOptions {
				continue
			}
			t.Run(m+" "+route, func(t *testing.T) {
				req := httptest.NewRequestWithContext(t.Context(), m, path, strings.NewReader(`{}`))
				req.Header.Set("Authorization", "Bearer "+testToken)
				rec := httptest.NewRecorder()
				b.srv.ServeHTTP(rec, req)
				allow := strings.Split(rec.Header().Get("Allow"), ", ")
				slices.Sort(allow)
				require.Equal(t, allowed, allow, "Allow")
				if m == http.MethodOptions {
					require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
					return
				}
				require.Equal(t, http.StatusMethodNotAllowed, rec.Code, rec.Body.String())
				if m == http.MethodHead {
					require.Empty(t, rec.Body.String(), "no body for HEAD")
					return
				}
				var body httpx.ErrorBody
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
				require.Equal(t, "method_not_allowed", body.Error.Code)
				require.NotEmpty(t, body.Error.Message)
			})
		}
	}
}
