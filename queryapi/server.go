package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tollgate/tollgate/pkg/httpx"
)

// failOpenState says whether the fail-open switch is on (failOpenSwitch).
type failOpenState interface{ On() bool }

// readinessChecker checks what /readyz reports (readiness).
type readinessChecker interface {
	check(ctx context.Context) readyBody
}

// serverDeps are newServer's dependencies.
type serverDeps struct {
	reader   reader
	failOpen failOpenState
	// flags is the flag catalogue /ofrep answers from.
	flags    flagNames
	ready    readinessChecker
	tokens   []string
	logger   *slog.Logger
	metrics  *metrics
	gatherer prometheus.Gatherer
	// livemode is the mode a request without ?livemode= is answered from (QUERYAPI_LIVEMODE).
	livemode bool
	// failOpenTimeout bounds the read of the real data behind a fail-open answer.
	failOpenTimeout time.Duration
	// waits are the ?wait_for= requests (read your writes).
	waits *waiters
}

// server holds what the handlers need. Its methods are the handlers; routes.go maps them.
type server struct {
	serverDeps
	auth httpx.Tokens // hashed tokens
	// ofrepBuffers hold OFREP request and answer bodies between requests (*bytes.Buffer).
	ofrepBuffers sync.Pool
}

// newServer is the HTTP handler of the query API: echo with every route of routes.go, one
// middleware that recovers panics into 500s and records metrics, and one error handler.
func newServer(d serverDeps) *echo.Echo {
	s := &server{serverDeps: d, auth: httpx.NewTokens(d.tokens)}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.logger)
	e.Use(jsonHeaders)
	e.Use(d.metrics.observe(d.logger))
	addRoutes(e, s)
	return e
}

// jsonHeaders sets httpx.JSONHeaders on every answer, before the handler or the error handler
// writes it: every answer of the query API is JSON, or /metrics, which needs no caching either.
func jsonHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		httpx.JSONHeaders(c.Response().Header())
		return next(c)
	}
}
