package httpx

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// Tokens is a set of bearer tokens, checked without leaking through timing which token matched,
// how much of one matched or how long the tokens are: both sides are hashed to 32 bytes and
// compared in constant time against every token, without an early exit. The zero value holds
// no token. It is safe for concurrent use.
type Tokens struct {
	digests [][sha256.Size]byte
}

// NewTokens is the set of tokens.
func NewTokens(tokens []string) Tokens {
	s := Tokens{digests: make([][sha256.Size]byte, 0, len(tokens))}
	for _, t := range tokens {
		s.digests = append(s.digests, sha256.Sum256([]byte(t)))
	}
	return s
}

// Valid reports whether token is one of the set.
func (s Tokens) Valid(token string) bool {
	d := sha256.Sum256([]byte(token))
	match := 0
	for i := range s.digests {
		match |= subtle.ConstantTimeCompare(d[:], s.digests[i][:])
	}
	return match == 1
}

// ValidHeader reports whether an Authorization header is "Bearer <token>" with a token of the
// set (the scheme is case-insensitive, RFC 9110).
func (s Tokens) ValidHeader(header string) bool {
	token, ok := BearerToken(header)
	return ok && s.Valid(token)
}

// BearerToken is the token of an "Authorization: Bearer <token>" header; the scheme is
// case-insensitive (RFC 9110). ok is false without one.
func BearerToken(header string) (string, bool) {
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	token := strings.TrimSpace(header[len(scheme):])
	return token, token != ""
}
