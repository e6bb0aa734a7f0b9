package main

import (
	"github.com/labstack/echo/v4"

	"github.com/tollgate/tollgate/pkg/httpx"
)

// tokenIndexKey is the echo.Context key of the index of the request's token in QUERYAPI_TOKENS
// (set by requireToken): what the wait_for share is counted by.
const tokenIndexKey = "tollgate.token_index"

// tokenIndex is the index of the token requireToken accepted, 0 when none did.
func tokenIndex(c echo.Context) int {
	i, _ := c.Get(tokenIndexKey).(int)
	return i
}

// requireToken answers 401 unless the request carries one of the tokens.
func requireToken(tokens httpx.Tokens) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, ok := httpx.BearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
			if !ok {
				return errUnauthorized
			}
			i, ok := tokens.Match(token)
			if !ok {
				return errUnauthorized
			}
			c.Set(tokenIndexKey, i)
			return next(c)
		}
	}
}
