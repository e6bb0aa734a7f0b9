package main

import (
	"github.com/labstack/echo/v4"

	"github.com/tollgate/tollgate/pkg/httpx"
)

// requireToken answers 401 unless the request carries one of the tokens.
func requireToken(tokens httpx.Tokens) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !tokens.ValidHeader(c.Request().Header.Get(echo.HeaderAuthorization)) {
				return errUnauthorized
			}
			return next(c)
		}
	}
}
