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

// valid reports whether token is one of the set.
func (s tokenSet) valid(token string) bool {
	d := sha256.Sum256([]byte(token))
	match := 0
	for i := range s.digests {
		match |= subtle.ConstantTimeCompare(d[:], s.digests[i][:])
	}
	return match == 1
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
			if !ok || !tokens.valid(token) {
				return errUnauthorized
			}
			return next(c)
		}
	}
}
