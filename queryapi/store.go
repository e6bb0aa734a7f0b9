package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
)

const (
	applicationName       = "tollgate-queryapi"
	listenApplicationName = "tollgate-queryapi-listen"
)

// openReadOnlyPool opens the pool the service reads with. Every session starts with
// default_transaction_read_only=on, so even a bug cannot write through it (the grant in
// README.md is the second fence). The pool connects lazily.
func openReadOnlyPool(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	readOnly(cfg.ConnConfig)
	cfg.ConnConfig.RuntimeParams["application_name"] = applicationName
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	return pool, nil
}

// listenConnConfig is the configuration of the LISTEN session: the pool's (read-only) with its
// own application_name, so operators can tell the two apart in pg_stat_activity.
func listenConnConfig(pool *pgxpool.Pool) *pgx.ConnConfig {
	c := pool.Config().ConnConfig.Copy()
	c.RuntimeParams["application_name"] = listenApplicationName
	return c
}

// readOnly makes every session of c read-only. It also prices sequential scans out: every
// lookup is by key, and a prepared statement's plan made while the read model was tiny (a new
// deployment) would otherwise stay a sequential scan as the tables grow.
//
// A DATABASE_URL with target_session_attrs=read-write (the contract's multi-host form, which
// finds a promoted standby after a failover) asks for a server that accepts writes; pgx checks
// that with `SHOW transaction_read_only`, which these read-only sessions answer "on" on every
// server, so no host would ever pass. It is checked as target_session_attrs=primary instead (not
// in recovery): the same servers, the one question a read-only session can answer.
func readOnly(c *pgx.ConnConfig) {
	c.RuntimeParams["default_transaction_read_only"] = "on"
	c.RuntimeParams["enable_seqscan"] = "off"
	if c.ValidateConnect != nil &&
		reflect.ValueOf(c.ValidateConnect).Pointer() == reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsReadWrite).Pointer() {
		c.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsPrimary
	}
}

// key names one answer: a user's or a customer's, in one scope. Its String form, "u:" or "c:"
// followed by the scope.Key form ("u:live  u_42", "c:test acct_1 cus_1"), is what the read
// model's triggers send as notification payloads (migrations/000005).
type key struct {
	user  bool
	scope scope.Scope
	id    string
}

const (
	userPrefix     = "u:"
	customerPrefix = "c:"
)

// userKey and customerKey name an answer in the zero scope (test mode, the platform); in moves
// a key to another scope.
func userKey(id string) key         { return key{user: true, id: id} }
func customerKey(id string) key     { return key{id: id} }
func (k key) in(sc scope.Scope) key { k.scope = sc; return k }

// parseKey reads a notification payload; ok is false for anything but "u:…" or "c:…" with a
// scope.
func parseKey(payload string) (k key, ok bool) {
	rest, user := strings.CutPrefix(payload, userPrefix)
	if !user {
		if rest, ok = strings.CutPrefix(payload, customerPrefix); !ok {
			return key{}, false
		}
	}
	sk, err := scope.ParseKey(rest)
	if err != nil {
		return key{}, false
	}
	return key{user: user, scope: sk.Scope, id: sk.ID}, true
}

func (k key) String() string {
	if k.user {
		return userPrefix + k.scope.Of(k.id).String()
	}
	return customerPrefix + k.scope.Of(k.id).String()
}

// answer is what the read model says for a key: not found, or a view with its JSON encoding
// prepared once, so a cached answer is served without encoding.
type answer struct {
	found bool
	view  entitlement.Answer
	body  []byte
}

func newAnswer(v entitlement.Answer) (*answer, error) {
	v = normalize(v)
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode entitlement: %w", err)
	}
	return &answer{found: true, view: v, body: append(b, '\n')}, nil
}

// normalize holds the contract whatever the rows contain: times in UTC, [] rather than null
// for every list and {} for limits.
func normalize(v entitlement.Answer) entitlement.Answer {
	v.CustomerIDs = nonNil(v.CustomerIDs)
	v.Features = nonNil(v.Features)
	if v.Limits == nil {
		v.Limits = map[string]int64{}
	}
	grants := make([]entitlement.Grant, len(v.Grants))
	for i, g := range v.Grants {
		g.Features, g.Until, g.CreatedAt = nonNil(g.Features), utc(g.Until), g.CreatedAt.UTC()
		if g.Limits == nil {
			g.Limits = map[string]int64{}
		}
		grants[i] = g
	}
	v.Grants = grants
	subs := make([]entitlement.Subscription, len(v.Subscriptions))
	for i, s := range v.Subscriptions {
		s.PriceIDs, s.ProductIDs = nonNil(s.PriceIDs), nonNil(s.ProductIDs)
		s.CurrentPeriodEnd, s.TrialEnd, s.EndedAt = utc(s.CurrentPeriodEnd), utc(s.TrialEnd), utc(s.EndedAt)
		subs[i] = s
	}
	v.Subscriptions = subs
	v.LastEventCreated, v.UpdatedAt = utc(v.LastEventCreated), utc(v.UpdatedAt)
	return v
}

// utc is t in UTC, clamped to the years RFC 3339 can write (0001 to 9999): a row written before
// the processor clamped its times (a year-10000 last_event_created) must not make every answer
// for its customer a 500.
func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	first, last := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	u := t.UTC() // keeps the fraction of updated_at
	switch {
	case u.Before(first):
		u = first
	case u.After(last):
		u = last
	}
	return &u
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// dbReader reads answers straight from the read model, one query per call.
type dbReader struct {
	q       entitlement.Querier
	timeout time.Duration
}

// read answers for k: an answer with found false (not an error) when the read model has no row.
func (r dbReader) read(ctx context.Context, k key) (*answer, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var v entitlement.Answer
	var err error
	if k.user {
		var u entitlement.User
		u, err = entitlement.GetUser(ctx, r.q, k.scope.Of(k.id))
		v = entitlement.UserAnswer(u)
	} else {
		var c entitlement.Customer
		c, err = entitlement.GetCustomer(ctx, r.q, k.scope.Of(k.id))
		v = entitlement.CustomerAnswer(c)
	}
	if errors.Is(err, entitlement.ErrNotFound) {
		return &answer{}, nil
	}
	if err != nil {
		return nil, err
	}
	return newAnswer(v)
}

// recent reads the answers of the most recently changed users, then customers, at most limit of
// each, newest first: what the cache is warmed with.
func (r dbReader) recent(ctx context.Context, limit int) ([]keyedAnswer, error) {
	users, err := entitlement.RecentUsers(ctx, r.q, limit)
	if err != nil {
		return nil, err
	}
	customers, err := entitlement.RecentCustomers(ctx, r.q, limit)
	if err != nil {
		return nil, err
	}
	out := make([]keyedAnswer, 0, len(users)+len(customers))
	for _, u := range users {
		a, err := newAnswer(entitlement.UserAnswer(u))
		if err != nil {
			return nil, err
		}
		out = append(out, keyedAnswer{userKey(u.UserID).in(u.Scope), a})
	}
	for _, c := range customers {
		a, err := newAnswer(entitlement.CustomerAnswer(c))
		if err != nil {
			return nil, err
		}
		out = append(out, keyedAnswer{customerKey(c.CustomerID).in(c.Scope), a})
	}
	return out, nil
}
