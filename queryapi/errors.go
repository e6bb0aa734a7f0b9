package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/httpx"
)

// Errors the handlers return; errorHandler maps them to answers.
var (
	errUnauthorized = errors.New("a valid Authorization: Bearer token is required")
	errInvalidID    = errors.New("invalid id")
	errInvalidParam = errors.New("invalid query parameter")
)

// errorHandler is the one place that turns an error into an HTTP answer, in the contract's
// shape {"error":{"code":"…","message":"…"}}. Answers of 500 and 503 never carry the cause; it
// is logged instead.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, code, message := classify(err)
		// A request whose client went away (context.Canceled) is nobody's problem to log.
		if status >= http.StatusInternalServerError && !errors.Is(err, context.Canceled) {
			logger.Error("request failed", "method", c.Request().Method, "route", c.Path(),
				"status", status, "err", err)
		}
		if status == http.StatusUnauthorized {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="tollgate"`)
		}
		var werr error
		switch {
		case c.Request().Method == http.MethodHead:
			werr = c.NoContent(status)
		case status >= http.StatusInternalServerError && strings.HasPrefix(c.Path(), ofrepPrefix):
			// OFREP knows one server error, 500 with generalErrorResponse (errorDetails); the key
			// and GENERAL let its providers report the details as the evaluation's error.
			werr = c.JSON(http.StatusInternalServerError, ofrepFailure{Key: c.Param("key"), ErrorCode: codeGeneral, ErrorDetails: message})
		default:
			werr = c.JSON(status, httpx.ErrorBody{Error: httpx.ErrorDetail{Code: code, Message: message}})
		}
		if werr != nil {
			logger.Debug("write error answer", "err", werr)
		}
	}
}

// classify maps an error to status, code and message.
func classify(err error) (status int, code, message string) {
	if status, code, message, ok := classifyWait(err); ok { // read your writes: wait_for
		return status, code, message
	}
	var he *echo.HTTPError
	switch {
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, "unauthorized", err.Error()
	case errors.Is(err, entitlement.ErrNotFound):
		return http.StatusNotFound, "not_found", "no entitlement is known for this id"
	case errors.Is(err, errInvalidID):
		return http.StatusBadRequest, "invalid_id", err.Error()
	case errors.Is(err, errInvalidParam):
		return http.StatusBadRequest, "invalid_parameter", err.Error()
	case errors.Is(err, errCatalogueUnknown):
		return http.StatusServiceUnavailable, "unavailable", "the flag catalogue has not been read yet; retry"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "unavailable", "the read model did not answer in time; retry"
	case postgresUnavailable(err):
		return http.StatusServiceUnavailable, "unavailable", "the read model is unavailable; retry"
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			return http.StatusNotFound, "not_found", "no such route"
		case http.StatusMethodNotAllowed:
			return http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed"
		}
		if he.Code >= http.StatusBadRequest && he.Code < http.StatusInternalServerError {
			text := http.StatusText(he.Code)
			return he.Code, strings.ReplaceAll(strings.ToLower(text), " ", "_"), text
		}
	}
	return http.StatusInternalServerError, "internal", "internal error"
}

// postgresUnavailable reports whether err says that Postgres could not be reached, dropped the
// connection, or is shutting down or starting up: an outage, which a retry can outlive, not a
// fault of the request or of this code.
func postgresUnavailable(err error) bool {
	var (
		connectErr *pgconn.ConnectError
		pgErr      *pgconn.PgError
		netErr     net.Error
	)
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.As(err, &pgErr):
		// Class 08 connection exception; 57P01 admin_shutdown, 57P02 crash_shutdown,
		// 57P03 cannot_connect_now.
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")
	}
	return false
}
