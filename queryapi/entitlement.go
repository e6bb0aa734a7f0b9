package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
)

// maxIDLength bounds the ids the API accepts; Stripe ids and app user ids are far shorter.
const maxIDLength = 255

// userEntitlement is GET /v1/users/:user_id/entitlement.
func (s *server) userEntitlement(c echo.Context) error {
	id, err := pathID(c, "user_id")
	if err != nil {
		return err
	}
	sc, err := s.scopeOf(c)
	if err != nil {
		return err
	}
	k := userKey(id).in(sc)
	if err := s.waitFor(c, k); err != nil { // read your writes
		return err
	}
	return s.answer(c, k)
}

// customerEntitlement is GET /v1/customers/:customer_id/entitlement.
func (s *server) customerEntitlement(c echo.Context) error {
	id, err := pathID(c, "customer_id")
	if err != nil {
		return err
	}
	sc, err := s.scopeOf(c)
	if err != nil {
		return err
	}
	k := customerKey(id).in(sc)
	if err := s.waitFor(c, k); err != nil { // read your writes
		return err
	}
	return s.answer(c, k)
}

// answer serves the read model's answer for k, or the fail-open grant while the switch is on.
func (s *server) answer(c echo.Context, k key) error {
	ctx := c.Request().Context()
	failOpen := s.failOpen.On()
	if failOpen {
		// The grant must not wait on a slow database: the real data is a courtesy.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.failOpenTimeout)
		defer cancel()
	}
	a, err := s.reader.read(ctx, k)
	if failOpen {
		if err != nil {
			s.logger.Warn("read failed while fail-open is on; granting without the real data", "err", err)
			a = nil
		}
		return c.JSON(http.StatusOK, failOpenView(k, a))
	}
	if err != nil {
		return err
	}
	if !a.found {
		return fmt.Errorf("%s: %w", k, entitlement.ErrNotFound)
	}
	return c.JSONBlob(http.StatusOK, a.body)
}

// failOpenView is the answer while fail-open is on: the real data where the read model knows the
// id, with premium and fail_open true; for an unknown id (or when Postgres did not answer) a
// minimal body naming the requested id, status "none". Either way features is never empty: a
// grant without any subscription's features gets ["premium"], the feature of a granting
// subscription without a plan mapping.
func failOpenView(k key, a *answer) entitlement.Answer {
	var v entitlement.Answer
	if a != nil && a.found {
		v = a.view
	} else {
		v = entitlement.Answer{CustomerIDs: []string{}, Livemode: k.scope.Livemode, Account: entitlement.AccountOf(k.scope),
			Status: "none", Features: []string{}, Limits: map[string]int64{}, Grants: []entitlement.Grant{},
			Subscriptions: []entitlement.Subscription{}}
		id := k.id
		if k.user {
			v.UserID = &id
		} else {
			v.CustomerIDs = []string{id}
		}
	}
	v.Premium, v.FailOpen = true, true
	if len(v.Features) == 0 {
		v.Features = []string{"premium"}
	}
	return v
}

// scopeOf is the scope a request asks about: ?livemode=true|false (default QUERYAPI_LIVEMODE) and
// ?account=acct_… (default the platform's own), or errInvalidParam naming the parameter.
func (s *server) scopeOf(c echo.Context) (scope.Scope, error) {
	sc := scope.Scope{Livemode: s.livemode}
	q := c.QueryParams()
	if vs, ok := q["livemode"]; ok {
		switch {
		case len(vs) != 1:
			return sc, fmt.Errorf("%w: livemode is given more than once", errInvalidParam)
		case vs[0] == "true":
			sc.Livemode = true
		case vs[0] == "false":
			sc.Livemode = false
		default:
			return sc, fmt.Errorf("%w: livemode must be true or false", errInvalidParam)
		}
	}
	if vs, ok := q["account"]; ok {
		switch {
		case len(vs) != 1:
			return sc, fmt.Errorf("%w: account is given more than once", errInvalidParam)
		case !scope.ValidAccount(vs[0]):
			return sc, fmt.Errorf("%w: account must be a connected account id, acct_ followed by letters and digits", errInvalidParam)
		}
		sc.Account = vs[0]
	}
	return sc, nil
}

// pathID is the decoded path parameter name, or errInvalidID. Echo hands out the raw segment
// when the path needed escaping (r.URL.RawPath set), else the decoded one.
func pathID(c echo.Context, name string) (string, error) {
	id := c.Param(name)
	if c.Request().URL.RawPath != "" {
		var err error
		if id, err = url.PathUnescape(id); err != nil {
			return "", fmt.Errorf("%w: %s is not a valid URL path segment", errInvalidID, name)
		}
	}
	switch {
	case id == "":
		return "", fmt.Errorf("%w: %s is empty", errInvalidID, name)
	case len(id) > maxIDLength:
		return "", fmt.Errorf("%w: %s is longer than %d bytes", errInvalidID, name, maxIDLength)
	case !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl):
		return "", fmt.Errorf("%w: %s must be UTF-8 without control characters", errInvalidID, name)
	}
	return id, nil
}
