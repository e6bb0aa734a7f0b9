package main

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDocument describes the query API (OpenAPI 3.0). TestOpenAPI* keep it complete.
//
//go:embed openapi.json
var openAPIDocument []byte

// serveOpenAPI is GET /openapi.json; it needs no token.
func serveOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDocument)
}
