package main

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate/tollgate/pkg/httpx"
)

// addRoutes is the whole HTTP surface of the query API. openapi.json documents every route
// (TestOpenAPIDocumentsEveryRoute).
func addRoutes(e *echo.Echo, s *server) {
	e.GET("/healthz", echo.WrapHandler(httpx.Health()))
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})))
	e.GET("/openapi.json", serveOpenAPI)

	v1 := e.Group("/v1", requireToken(s.auth))
	v1.GET("/users/:user_id/entitlement", s.userEntitlement)
	v1.GET("/customers/:customer_id/entitlement", s.customerEntitlement)
	// The group's catch-all (it makes every /v1 path answer 401 without a token) would take
	// every other method on these paths for an unknown route (404): they are 405 with Allow,
	// as echo answers on the routes outside the group.
	for _, p := range []string{"/users/:user_id/entitlement", "/customers/:customer_id/entitlement"} {
		v1.Match(otherMethods(http.MethodGet), p, notAllowed(http.MethodGet))
	}

	// OpenFeature Remote Evaluation Protocol (ofrep.go): entitlements as flags. Routes, not a
	// group: a group's catch-all would answer another method 404 instead of 405 with Allow.
	e.POST("/ofrep/v1/evaluate/flags/:key", s.evaluateFlag, requireToken(s.auth))
	e.POST("/ofrep/v1/evaluate/flags", s.evaluateFlags, requireToken(s.auth))
}

// otherMethods are the standard methods but the ones served.
func otherMethods(served ...string) []string {
	all := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace}
	return slices.DeleteFunc(all, func(m string) bool { return slices.Contains(served, m) })
}

// notAllowed answers a route's unserved methods: OPTIONS with 204, anything else with 405
// method_not_allowed; both with Allow listing the served methods (and OPTIONS).
func notAllowed(served ...string) echo.HandlerFunc {
	allow := strings.Join(append(slices.Clone(served), http.MethodOptions), ", ")
	return func(c echo.Context) error {
		c.Response().Header().Set(echo.HeaderAllow, allow)
		if c.Request().Method == http.MethodOptions {
			return c.NoContent(http.StatusNoContent)
		}
		return echo.ErrMethodNotAllowed
	}
}
