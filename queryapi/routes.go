package main

import (
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

	// OpenFeature Remote Evaluation Protocol (ofrep.go): entitlements as flags. Routes, not a
	// group: a group's catch-all would answer another method 404 instead of 405 with Allow.
	e.POST("/ofrep/v1/evaluate/flags/:key", s.evaluateFlag, requireToken(s.auth))
	e.POST("/ofrep/v1/evaluate/flags", s.evaluateFlags, requireToken(s.auth))
}
