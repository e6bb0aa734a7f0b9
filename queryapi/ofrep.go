package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// The OpenFeature Remote Evaluation Protocol (OFREP, github.com/open-feature/protocol,
// service/openapi.yaml): any OpenFeature SDK's OFREP provider reads a user's answer as flags.
// The flags are premium (boolean), status (string), every feature name (boolean: in the
// answer's features) and every limit name (integer, 0 when the user has none) that the flag
// catalogue or the user's own answer names. A flag is evaluated from the same cached answer as
// GET /v1/users/{id}/entitlement, so it costs what that check costs and changes when it does.

// ofrepPrefix starts every OFREP route; errorHandler answers their server errors in OFREP's shape.
const ofrepPrefix = "/ofrep/"

// Reasons and error codes, as OpenFeature names them.
const (
	reasonTargetingMatch    = "TARGETING_MATCH" // the user's answer
	reasonDefault           = "DEFAULT"         // no answer for the user in the scope: the empty answer's value
	reasonStatic            = "STATIC"          // fail-open is on: every boolean flag is true
	codeFlagNotFound        = "FLAG_NOT_FOUND"
	codeTargetingKeyMissing = "TARGETING_KEY_MISSING"
	codeInvalidContext      = "INVALID_CONTEXT"
	codeParseError          = "PARSE_ERROR"
	codeGeneral             = "GENERAL"
)

// The built-in flags. A feature or limit of the same name is shadowed by them.
const (
	flagPremium = "premium"
	flagStatus  = "status"
)

// maxOFREPBody bounds an evaluation request: a context is a few fields.
const maxOFREPBody = 64 << 10

// flagNames is the flag catalogue (flagCatalogue); ok is false until it was first read.
type flagNames interface {
	current() (c *catalogue.Catalogue, ok bool)
}

// flagEvaluation is one evaluated flag: OFREP's evaluationSuccess.
type flagEvaluation struct {
	Key      string       `json:"key"`
	Value    any          `json:"value"` // bool, string or int64
	Reason   string       `json:"reason"`
	Variant  string       `json:"variant"`
	Metadata flagMetadata `json:"metadata"`
}

// flagMetadata says which answer a value comes from. OFREP's metadata values are booleans,
// strings and numbers, never null: the platform's account is "", and the fields of an answer
// that does not exist are left out.
type flagMetadata struct {
	Livemode    bool   `json:"livemode"`
	Account     string `json:"account"`
	FailOpen    bool   `json:"fail_open"`
	LastEventID string `json:"last_event_id,omitempty"`
	UpdatedAt   string `json:"updated_at,omitempty"`
}

// bulkEvaluation is OFREP's bulkEvaluationSuccess (appendEvaluation writes it by hand).
type bulkEvaluation struct {
	Flags []flagEvaluation `json:"flags"`
}

// appendEvaluation appends ev's JSON, as encoding/json writes it (TestAppendEvaluation), without
// reflection: an evaluation should cost no more than the entitlement check it is built on.
func appendEvaluation(dst []byte, ev flagEvaluation) []byte {
	dst = append(dst, `{"key":`...)
	dst = appendJSONString(dst, ev.Key)
	dst = append(dst, `,"value":`...)
	switch v := ev.Value.(type) {
	case bool:
		dst = strconv.AppendBool(dst, v)
	case int64:
		dst = strconv.AppendInt(dst, v, 10)
	case string:
		dst = appendJSONString(dst, v)
	default:
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"reason":`...)
	dst = appendJSONString(dst, ev.Reason)
	dst = append(dst, `,"variant":`...)
	dst = appendJSONString(dst, ev.Variant)
	m := ev.Metadata
	dst = append(dst, `,"metadata":{"livemode":`...)
	dst = strconv.AppendBool(dst, m.Livemode)
	dst = append(dst, `,"account":`...)
	dst = appendJSONString(dst, m.Account)
	dst = append(dst, `,"fail_open":`...)
	dst = strconv.AppendBool(dst, m.FailOpen)
	if m.LastEventID != "" {
		dst = append(dst, `,"last_event_id":`...)
		dst = appendJSONString(dst, m.LastEventID)
	}
	if m.UpdatedAt != "" {
		dst = append(dst, `,"updated_at":`...)
		dst = appendJSONString(dst, m.UpdatedAt)
	}
	return append(dst, "}}"...)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control characters
// escaped, <, > and & too (as encoding/json does, so a value is safe in HTML), and invalid UTF-8
// replaced by U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // valid JSON, but not JavaScript before ES2019
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ofrepFailure is OFREP's evaluationFailure and flagNotFound (with key), bulkEvaluationFailure
// (without) and, with errorCode GENERAL, generalErrorResponse.
type ofrepFailure struct {
	Key          string `json:"key,omitempty"`
	ErrorCode    string `json:"errorCode"`
	ErrorDetails string `json:"errorDetails"`
}

// ofrepError is a failure answered in OFREP's shape by the handler itself: 400 or 404.
type ofrepError struct {
	status  int
	code    string
	details string
}

func (e *ofrepError) Error() string { return e.code + ": " + e.details }

func invalidContext(format string, args ...any) *ofrepError {
	return &ofrepError{http.StatusBadRequest, codeInvalidContext, fmt.Sprintf(format, args...)}
}

// flagKind is a flag's type.
type flagKind int

const (
	kindBoolean flagKind = iota + 1
	kindString
	kindInteger
)

// evaluationContext is what a request's context says: the user and the scope.
type evaluationContext struct {
	userID string
	scope  scope.Scope
}

// evaluateFlag is POST /ofrep/v1/evaluate/flags/:key.
func (s *server) evaluateFlag(c echo.Context) error {
	name := c.Param("key")
	if c.Request().URL.RawPath != "" {
		if u, err := url.PathUnescape(name); err == nil {
			name = u
		}
	}
	ec, oerr := s.evaluationContext(c)
	if oerr != nil {
		return c.JSON(oerr.status, ofrepFailure{Key: name, ErrorCode: oerr.code, ErrorDetails: oerr.details})
	}
	a, failOpen, err := s.flagAnswer(c.Request().Context(), ec)
	if err != nil {
		return err
	}
	cat, known := s.flags.current()
	kind, ok := flagKindOf(name, cat, a)
	if !ok {
		if !known {
			return errCatalogueUnknown
		}
		return c.JSON(http.StatusNotFound, ofrepFailure{Key: name, ErrorCode: codeFlagNotFound,
			ErrorDetails: fmt.Sprintf("no flag %q: the flags are premium, status, and the feature and limit names of PLANS_FILE and of grants", name)})
	}
	buf := s.buffer()
	defer s.ofrepBuffers.Put(buf)
	buf.Write(appendEvaluation(buf.AvailableBuffer(), evaluate(name, kind, ec, a, failOpen)))
	return c.JSONBlob(http.StatusOK, buf.Bytes())
}

// evaluateFlags is POST /ofrep/v1/evaluate/flags: every flag for the user, with an ETag of the
// answer; If-None-Match with it answers 304 while the answer is the same.
func (s *server) evaluateFlags(c echo.Context) error {
	ec, oerr := s.evaluationContext(c)
	if oerr != nil {
		return c.JSON(oerr.status, ofrepFailure{ErrorCode: oerr.code, ErrorDetails: oerr.details})
	}
	a, failOpen, err := s.flagAnswer(c.Request().Context(), ec)
	if err != nil {
		return err
	}
	cat, known := s.flags.current()
	if !known {
		return errCatalogueUnknown
	}
	buf := s.buffer()
	defer s.ofrepBuffers.Put(buf)
	body := append(buf.AvailableBuffer(), `{"flags":[`...)
	for i, n := range flagNamesOf(cat, a) {
		if i > 0 {
			body = append(body, ',')
		}
		kind, _ := flagKindOf(n, cat, a)
		body = appendEvaluation(body, evaluate(n, kind, ec, a, failOpen))
	}
	body = append(body, "]}"...)
	buf.Write(body) // keeps the grown array for the pool
	h := fnv.New64a()
	_, _ = h.Write(body) // a hash never fails
	etag := `"` + hex.EncodeToString(h.Sum(nil)) + `"`
	c.Response().Header().Set("ETag", etag) // on the 304 too (RFC 9110 15.4.5)
	if etagMatches(c.Request().Header.Values("If-None-Match"), etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.JSONBlob(http.StatusOK, body)
}

// errCatalogueUnknown: the flag catalogue was never read, so a name cannot be told from a typo.
var errCatalogueUnknown = errors.New("the flag catalogue has not been read yet")

// evaluationContext reads the request body {"context": {...}}: targetingKey is the user id,
// livemode and account choose the scope (QUERYAPI_LIVEMODE and the platform by default, as /v1).
// Other context fields are ignored (OFREP's context allows any).
func (s *server) evaluationContext(c echo.Context) (evaluationContext, *ofrepError) {
	ec := evaluationContext{scope: scope.Scope{Livemode: s.livemode}}
	buf := s.buffer()
	defer s.ofrepBuffers.Put(buf)
	_, err := buf.ReadFrom(io.LimitReader(c.Request().Body, maxOFREPBody+1))
	body := buf.Bytes()
	switch {
	case err != nil:
		return ec, &ofrepError{http.StatusBadRequest, codeParseError, "could not read the request body"}
	case len(body) > maxOFREPBody:
		return ec, &ofrepError{http.StatusBadRequest, codeParseError, fmt.Sprintf("the request body is larger than %d bytes", maxOFREPBody)}
	}
	var req struct {
		Context *struct {
			TargetingKey rawValue `json:"targetingKey"`
			Livemode     rawValue `json:"livemode"`
			Account      rawValue `json:"account"`
		} `json:"context"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "context" {
			return ec, invalidContext("context must be an object")
		}
		return ec, &ofrepError{http.StatusBadRequest, codeParseError, `the request body must be a JSON object {"context": {"targetingKey": "<user id>"}}`}
	}
	if req.Context == nil || isNull(req.Context.TargetingKey) {
		return ec, &ofrepError{http.StatusBadRequest, codeTargetingKeyMissing, "context.targetingKey (the user id) is required"}
	}
	var ok bool
	if ec.userID, ok = jsonString(req.Context.TargetingKey); !ok {
		return ec, invalidContext("targetingKey must be a string (the user id)")
	}
	switch id := ec.userID; {
	case id == "":
		return ec, &ofrepError{http.StatusBadRequest, codeTargetingKeyMissing, "context.targetingKey (the user id) is empty"}
	case len(id) > maxIDLength:
		return ec, invalidContext("targetingKey is longer than %d bytes", maxIDLength)
	case !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl):
		return ec, invalidContext("targetingKey must be UTF-8 without control characters")
	}
	switch lm := string(req.Context.Livemode); lm {
	case "", "null":
	case "true", "false":
		ec.scope.Livemode = lm == "true"
	default:
		return ec, invalidContext("livemode must be a boolean")
	}
	if !isNull(req.Context.Account) {
		if ec.scope.Account, ok = jsonString(req.Context.Account); !ok {
			return ec, invalidContext("account must be a string: a connected account id, acct_ followed by letters and digits")
		}
		if ec.scope.Account != "" && !scope.ValidAccount(ec.scope.Account) {
			return ec, invalidContext("account must be a connected account id, acct_ followed by letters and digits, or empty for the platform")
		}
	}
	return ec, nil
}

// rawValue is a JSON value as it stands in the request body: json.RawMessage without the copy
// (the body outlives every use of it, and the strings taken from it are copies).
type rawValue []byte

// UnmarshalJSON keeps b, a slice of the body.
func (r *rawValue) UnmarshalJSON(b []byte) error {
	*r = b
	return nil
}

func isNull(raw rawValue) bool { return len(raw) == 0 || string(raw) == "null" }

// jsonString is the string a JSON value (from a document already found valid) holds; ok is false
// when it is not a string. A string without escapes is cut out of the quotes: no decoder run.
func jsonString(raw rawValue) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var v string
	err := json.Unmarshal(raw, &v)
	return v, err == nil
}

// buffer is a reset buffer from the server's pool; put it back when done with its bytes.
func (s *server) buffer() *bytes.Buffer {
	b, _ := s.ofrepBuffers.Get().(*bytes.Buffer)
	if b == nil {
		return new(bytes.Buffer)
	}
	b.Reset()
	return b
}

// flagAnswer is the user's answer from the cache /v1 reads, as answer does: while fail-open is on
// the read is bounded by failOpenTimeout, and a failed read leaves a nil answer (every boolean
// flag is true anyway).
func (s *server) flagAnswer(ctx context.Context, ec evaluationContext) (a *answer, failOpen bool, err error) {
	failOpen = s.failOpen.On()
	if failOpen {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.failOpenTimeout)
		defer cancel()
	}
	a, err = s.reader.read(ctx, userKey(ec.userID).in(ec.scope))
	if err != nil && failOpen {
		s.logger.Warn("read failed while fail-open is on; granting without the real data", "err", err)
		return nil, true, nil
	}
	return a, failOpen, err
}

// flagKindOf is the type of flag name: the built-ins, then the catalogue, then the names of the
// user's own answer (a name the catalogue does not hold yet). ok is false for an unknown name.
func flagKindOf(name string, cat *catalogue.Catalogue, a *answer) (flagKind, bool) {
	switch name {
	case flagPremium:
		return kindBoolean, true
	case flagStatus:
		return kindString, true
	}
	if cat != nil {
		switch k, _ := cat.Kind(name); k {
		case catalogue.KindFeature:
			return kindBoolean, true
		case catalogue.KindLimit:
			return kindInteger, true
		}
	}
	if a != nil && a.found {
		if slices.Contains(a.view.Features, name) {
			return kindBoolean, true
		}
		if _, ok := limitsOf(a.view)[name]; ok {
			return kindInteger, true
		}
	}
	return 0, false
}

// flagNamesOf is every flag of the bulk answer: premium, status, then the catalogue's and the
// answer's names, sorted.
func flagNamesOf(cat *catalogue.Catalogue, a *answer) []string {
	names := slices.Clone(cat.Names())
	if a != nil && a.found {
		names = append(names, a.view.Features...)
		for n := range limitsOf(a.view) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	names = slices.DeleteFunc(slices.Compact(names), func(n string) bool { return n == flagPremium || n == flagStatus })
	return append([]string{flagPremium, flagStatus}, names...)
}

// evaluate is flag name of the given kind for the user whose answer is a (nil or not found: no
// answer in the scope).
func evaluate(name string, kind flagKind, ec evaluationContext, a *answer, failOpen bool) flagEvaluation {
	found := a != nil && a.found
	ev := flagEvaluation{Key: name, Reason: reasonDefault,
		Metadata: flagMetadata{Livemode: ec.scope.Livemode, Account: ec.scope.Account, FailOpen: failOpen}}
	if found {
		ev.Reason = reasonTargetingMatch
		if a.view.LastEventID != nil {
			ev.Metadata.LastEventID = *a.view.LastEventID
		}
		if a.view.UpdatedAt != nil {
			ev.Metadata.UpdatedAt = a.view.UpdatedAt.Format(time.RFC3339Nano)
		}
	}
	if failOpen {
		ev.Reason = reasonStatic
	}
	switch kind {
	case kindBoolean:
		var v bool
		switch {
		case failOpen:
			v = true
		case !found:
		case name == flagPremium:
			v = a.view.Premium
		default:
			v = slices.Contains(a.view.Features, name)
		}
		ev.Value, ev.Variant = v, strconv.FormatBool(v)
	case kindString:
		v := subscription.StatusNone
		if found {
			v = a.view.Status
		}
		ev.Value, ev.Variant = v, v
	case kindInteger:
		var v int64
		if found {
			v = limitsOf(a.view)[name]
		}
		ev.Value, ev.Variant = v, strconv.FormatInt(v, 10)
	}
	return ev
}

// limitsOf is the answer's limits by name (PLANS_FILE's limits and the active grants'); a limit
// the user has none of is absent, and its flag is 0.
func limitsOf(a entitlement.Answer) map[string]int64 { return a.Limits }

// etagMatches reports whether an If-None-Match header (each value a list of entity tags, or
// "*") matches etag, by the weak comparison RFC 9110 prescribes for If-None-Match.
func etagMatches(headers []string, etag string) bool {
	for _, h := range headers {
		for t := range strings.SplitSeq(h, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
}
