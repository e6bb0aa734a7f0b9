package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/labstack/echo/v4"
)

// tokenSet checks bearer tokens without leaking, through timing, which token matched, how much
// of one matched or how long the tokens are: both sides are hashed to 32 bytes and compared in
// constant time against every token, without an early exit.
type tokenSet struct {
	digests [][sha256.Size]byte
}

func newTokenSet(tokens []string) tokenSet {
	s := tokenSet{digests: make([][sha256.Size]byte, 0, len(tokens))}
	for _, t := range tokens {
		s.digests = append(s.digests, sha256.Sum256([]byte(t)))
	}
	return s
}

// match is the index of token in the set (the order of QUERYAPI_TOKENS), without an early exit:
// the index is selected in constant time as well.
func (s tokenSet) match(token string) (int, bool) {
	d := sha256.Sum256([]byte(token))
	match, index := 0, 0
	for i := range s.digests {
		eq := subtle.ConstantTimeCompare(d[:], s.digests[i][:])
		match |= eq
		index = subtle.ConstantTimeSelect(eq, i, index)
	}
	return index, match == 1
}

// tokenIndexKey is the echo.Context key of the index of the request's token (set by
// requireToken): what the wait_for share is counted by.
const tokenIndexKey = "tollgate.token_index"

// tokenIndex is the index of the token requireToken accepted, 0 when none did.
func tokenIndex(c echo.Context) int {
	i, _ := c.Get(tokenIndexKey).(int)
	return i
}

// bearerToken is the token of an "Authorization: Bearer <token>" header; the scheme is
// case-insensitive (RFC 9110).
func bearerToken(header string) (string, bool) {
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	token := strings.TrimSpace(header[len(scheme):])
	return token, token != ""
}

// requireToken answers 401 unless the request carries one of the tokens.
func requireToken(tokens tokenSet) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, ok := bearerToken(c.Request().Header.Get(echo.HeaderAuthorization))
			if !ok {
				return errUnauthorized
			}
			i, ok := tokens.match(token)
			if !ok {
				return errUnauthorized
			}
			c.Set(tokenIndexKey, i)
			return next(c)
		}
	}
}
