// Package grant holds the grants: access an operator gives a user outside Stripe (a comp account,
// a support extension, a partner), per scope, with features and limits, until a time or until
// revoked. Grants are an append-only log kept for good: a grant's terms never change, it ends
// once (revoked or expired) with who ended it and why, and every step is a row of grant_log. The
// read model shows a user's active grants on top of what its subscriptions give (RefreshUsers).
// It holds every statement on grants and grant_log.
package grant

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// Sentinel errors. Every error of Validate wraps ErrInvalid; its message says why.
var (
	ErrInvalid  = errors.New("invalid grant")
	ErrNotFound = errors.New("grant not found")
	ErrEnded    = errors.New("grant already ended")
)

// How a grant ended.
const (
	EndRevoked = "revoked"
	EndExpired = "expired"
)

// IDPrefix starts every grant id.
const IDPrefix = "grt_"

// Grant is one grant as the admin API lists it: its terms, and how it ended once it has.
type Grant struct {
	ID        string           `json:"id"`
	UserID    string           `json:"user_id"`
	Livemode  bool             `json:"livemode"`
	Account   *string          `json:"account"` // null for the platform
	Features  []string         `json:"features"`
	Limits    map[string]int64 `json:"limits"`
	Until     *time.Time       `json:"until"` // null: until revoked
	Reason    string           `json:"reason"`
	By        string           `json:"by"`
	CreatedAt time.Time        `json:"created_at"`
	Active    bool             `json:"active"`
	EndedAt   *time.Time       `json:"ended_at"`     // null while active
	EndedWhy  *string          `json:"ended_why"`    // "revoked" or "expired"
	EndedBy   *string          `json:"ended_by"`     // the token that revoked it; "tollgate" for an expiry
	EndReason *string          `json:"ended_reason"` // why it was revoked
}

// Scope is the grant's scope.
func (g Grant) Scope() scope.Scope {
	sc := scope.Scope{Livemode: g.Livemode}
	if g.Account != nil {
		sc.Account = *g.Account
	}
	return sc
}

// User is the grant's user in its scope.
func (g Grant) User() scope.Key { return g.Scope().Of(g.UserID) }

// Answer is the grant as the entitlement answer lists it.
func (g Grant) Answer() entitlement.Grant {
	return entitlement.Grant{ID: g.ID, Features: g.Features, Limits: g.Limits, Until: g.Until, Reason: g.Reason, By: g.By, CreatedAt: g.CreatedAt}
}

// Why is the grant in one line, as the user timeline shows it: "grt_… by ops until …: reason".
func (g Grant) Why() string {
	until := "revoked"
	if g.Until != nil {
		until = g.Until.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s by %s until %s: %s", g.ID, g.By, until, g.Reason)
}

// New is what an operator asks for: POST /admin/v1/grants, processor grant add, the console.
type New struct {
	Scope    scope.Scope
	UserID   string
	Features []string
	Limits   map[string]int64
	Until    *time.Time // nil: until revoked
	Reason   string
	By       string // the admin token's name
}

// maxReason bounds a reason: it is shown on every page of the user, not a document.
const maxReason = 1000

// Validate checks a new grant at time now against the rules' plans: a user id (printable, no
// spaces, at most 255 bytes, as Stripe's ids are), features or limits not both empty, non-empty
// names, limits not negative, until in the future (or nil), a reason and a giver. A name may not
// be both a feature and a limit, here or in the plans file ("premium" is always a feature), so
// that a flag keeps one type. It returns the grant with features sorted and deduplicated, or an
// error wrapping ErrInvalid that says why.
func (n New) Validate(now time.Time, rules subscription.Rules) (New, error) {
	bad := func(format string, a ...any) (New, error) {
		return New{}, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if !printable(n.UserID) {
		return bad("user_id must be 1 to 255 printable characters without spaces")
	}
	if n.Scope.Account != "" && !scope.ValidAccount(n.Scope.Account) {
		return bad("account %q is not a connected account id (acct_…)", n.Scope.Account)
	}
	if len(n.Features) == 0 && len(n.Limits) == 0 {
		return bad("features or limits must be non-empty")
	}
	planLimits := map[string]bool{}
	for _, ls := range rules.Limits {
		for name := range ls {
			planLimits[name] = true
		}
	}
	planFeatures := map[string]bool{subscription.DefaultFeature: true}
	for _, fs := range rules.Plans {
		for _, f := range fs {
			planFeatures[f] = true
		}
	}
	features := slices.Clone(n.Features)
	for _, f := range features {
		switch {
		case !printable(f):
			return bad("feature name %q must be 1 to 255 printable characters without spaces", f)
		case planLimits[f] || hasKey(n.Limits, f):
			return bad("%q is a limit, not a feature", f)
		}
	}
	for name, v := range n.Limits {
		switch {
		case !printable(name):
			return bad("limit name %q must be 1 to 255 printable characters without spaces", name)
		case v < 0:
			return bad("limit %q is negative (%d)", name, v)
		case planFeatures[name]:
			return bad("%q is a feature, not a limit", name)
		}
	}
	if n.Until != nil && !n.Until.After(now) {
		return bad("until %s is not in the future", n.Until.UTC().Format(time.RFC3339))
	}
	if strings.TrimSpace(n.Reason) == "" {
		return bad("reason is required: it is kept with the grant for good")
	}
	if len(n.Reason) > maxReason {
		return bad("reason is longer than %d bytes", maxReason)
	}
	if strings.TrimSpace(n.By) == "" {
		return bad("the giver (the admin token's name) is required")
	}
	slices.Sort(features)
	n.Features = slices.Compact(features)
	if n.Features == nil {
		n.Features = []string{}
	}
	if n.Limits == nil {
		n.Limits = map[string]int64{}
	}
	if n.Until != nil {
		u := n.Until.UTC()
		n.Until = &u
	}
	return n, nil
}

func hasKey(m map[string]int64, k string) bool {
	_, ok := m[k]
	return ok
}

func printable(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// NewID is a fresh grant id: grt_ and 24 hex digits of randomness.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return IDPrefix + hex.EncodeToString(b[:])
}

// Querier runs queries: a pool, a connection or a transaction.
type Querier = entitlement.Querier

const columns = `id, livemode, account, user_id, features, limits, until, reason, created_by, created_at,
	ended_at, ended_why, ended_by, ended_reason`

func scan(row pgx.Row) (Grant, error) {
	var g Grant
	var account string
	var limits []byte
	if err := row.Scan(&g.ID, &g.Livemode, &account, &g.UserID, &g.Features, &limits, &g.Until, &g.Reason, &g.By, &g.CreatedAt,
		&g.EndedAt, &g.EndedWhy, &g.EndedBy, &g.EndReason); err != nil {
		return Grant{}, err
	}
	if err := json.Unmarshal(limits, &g.Limits); err != nil {
		return Grant{}, fmt.Errorf("decode limits of grant %s: %w", g.ID, err)
	}
	if account != "" {
		g.Account = &account
	}
	if g.Features == nil {
		g.Features = []string{}
	}
	if g.Limits == nil {
		g.Limits = map[string]int64{}
	}
	g.CreatedAt = g.CreatedAt.UTC()
	for _, t := range []**time.Time{&g.Until, &g.EndedAt} {
		if *t != nil {
			u := (*t).UTC()
			*t = &u
		}
	}
	g.Active = g.EndedAt == nil
	return g, nil
}

func collect(rows pgx.Rows, err error) ([]Grant, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Grant{}
	for rows.Next() {
		g, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// Create stores a grant validated by New.Validate and its "created" log entry. Call it in the
// transaction that refreshes the user's row (RefreshUsers), so the grant and the answer that
// shows it commit together.
func Create(ctx context.Context, q Querier, n New) (Grant, error) {
	limits, err := json.Marshal(n.Limits)
	if err != nil {
		return Grant{}, fmt.Errorf("encode limits: %w", err)
	}
	id := NewID()
	g, err := scan(q.QueryRow(ctx, `INSERT INTO grants (id, livemode, account, user_id, features, limits, until, reason, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+columns,
		id, n.Scope.Livemode, n.Scope.Account, n.UserID, n.Features, limits, n.Until, n.Reason, n.By))
	if err != nil {
		return Grant{}, fmt.Errorf("create grant for %s: %w", n.Scope.Of(n.UserID), err)
	}
	if _, err := q.Exec(ctx, `INSERT INTO grant_log (grant_id, action, at, by, reason) VALUES ($1, 'created', $2, $3, $4)`,
		g.ID, g.CreatedAt, g.By, g.Reason); err != nil {
		return Grant{}, fmt.Errorf("log grant %s: %w", g.ID, err)
	}
	return g, nil
}

// Get reads one grant; ErrNotFound when there is none with that id.
func Get(ctx context.Context, q Querier, id string) (Grant, error) {
	g, err := scan(q.QueryRow(ctx, `SELECT `+columns+` FROM grants WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Grant{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("read grant %s: %w", id, err)
	}
	return g, nil
}

// Revoke ends an active grant now, by the named token, with a reason (may be empty), and logs it.
// It returns the ended grant; ErrNotFound when there is no such grant, ErrEnded when it has
// already ended (revoked or expired: it stays as it ended).
func Revoke(ctx context.Context, q Querier, id, by, reason string) (Grant, error) {
	g, err := scan(q.QueryRow(ctx, `UPDATE grants SET ended_at = now(), ended_why = 'revoked', ended_by = $2, ended_reason = $3
		WHERE id = $1 AND ended_at IS NULL RETURNING `+columns, id, by, reason))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := Get(ctx, q, id); err != nil {
			return Grant{}, err
		}
		return Grant{}, fmt.Errorf("%s: %w", id, ErrEnded)
	}
	if err != nil {
		return Grant{}, fmt.Errorf("revoke grant %s: %w", id, err)
	}
	if _, err := q.Exec(ctx, `INSERT INTO grant_log (grant_id, action, at, by, reason) VALUES ($1, 'revoked', $2, $3, $4)`,
		g.ID, *g.EndedAt, by, reason); err != nil {
		return Grant{}, fmt.Errorf("log grant %s: %w", g.ID, err)
	}
	return g, nil
}

// List reads every grant of a user in a scope, active and ended, oldest first.
func List(ctx context.Context, q Querier, user scope.Key) ([]Grant, error) {
	gs, err := collect(q.Query(ctx, `SELECT `+columns+` FROM grants WHERE livemode = $1 AND account = $2 AND user_id = $3
		ORDER BY created_at, id`, user.Livemode, user.Account, user.ID))
	if err != nil {
		return nil, fmt.Errorf("list grants of %s: %w", user, err)
	}
	return gs, nil
}

// Active reads the grants of the given users that are active at the transaction's time (not
// ended, until after now()), as the answer lists them (oldest first). Users without active
// grants are absent from the map.
func Active(ctx context.Context, q Querier, users []scope.Key) (map[scope.Key][]entitlement.Grant, error) {
	out := make(map[scope.Key][]entitlement.Grant)
	if len(users) == 0 {
		return out, nil
	}
	livemode, account, ids := scope.Columns(users)
	gs, err := collect(q.Query(ctx, `SELECT `+columns+` FROM grants
		WHERE (livemode, account, user_id) IN (SELECT * FROM unnest($1::boolean[], $2::text[], $3::text[]))
		  AND ended_at IS NULL AND (until IS NULL OR until > now())
		ORDER BY livemode, account, user_id, created_at, id`, livemode, account, ids))
	if err != nil {
		return nil, fmt.Errorf("read active grants of %d users: %w", len(users), err)
	}
	for _, g := range gs {
		out[g.User()] = append(out[g.User()], g.Answer())
	}
	return out, nil
}

// RefreshUsers rebuilds the read-model rows of the given users from their customers' rows and
// their grants active at the transaction's time (entitlement.RefreshUsersWithGrants). Callers
// hold the users' locks, as for entitlement.RefreshUsers. It returns the rows written (a user
// left with no row is absent).
func RefreshUsers(ctx context.Context, q Querier, users []scope.Key) (map[scope.Key]entitlement.User, error) {
	active, err := Active(ctx, q, users)
	if err != nil {
		return nil, err
	}
	return entitlement.RefreshUsersWithGrants(ctx, q, users, active)
}

// ExpireDue ends up to limit active grants whose until has come (at or before the transaction's
// now()), oldest until first, as expired at their until, logs each, and returns them. It locks
// the grants it takes and skips those another transaction holds (FOR UPDATE SKIP LOCKED), so
// several processors running it at once each expire different grants and every grant expires
// exactly once; the caller refreshes the grants' users in the same transaction.
func ExpireDue(ctx context.Context, q Querier, limit int) ([]Grant, error) {
	gs, err := collect(q.Query(ctx, `UPDATE grants SET ended_at = until, ended_why = 'expired', ended_by = 'tollgate'
		WHERE id IN (SELECT id FROM grants WHERE ended_at IS NULL AND until <= now()
			ORDER BY until, id LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING `+columns, limit))
	if err != nil {
		return nil, fmt.Errorf("expire due grants: %w", err)
	}
	if len(gs) == 0 {
		return gs, nil
	}
	slices.SortFunc(gs, func(a, b Grant) int { return a.EndedAt.Compare(*b.EndedAt) })
	b := &pgx.Batch{}
	for _, g := range gs {
		b.Queue(`INSERT INTO grant_log (grant_id, action, at, by, reason) VALUES ($1, 'expired', now(), 'tollgate', $2)`,
			g.ID, "until "+g.Until.Format(time.RFC3339))
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("log %d expired grants: %w", len(gs), err)
	}
	return gs, nil
}

// NextDue is the until of the active grant that expires first, ok false when no active grant has
// an until.
func NextDue(ctx context.Context, q Querier) (next time.Time, ok bool, err error) {
	var t *time.Time
	if err := q.QueryRow(ctx, `SELECT min(until) FROM grants WHERE ended_at IS NULL AND until IS NOT NULL`).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("next grant expiry: %w", err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return t.UTC(), true, nil
}

// Entry is one line of the grants log: a grant created, revoked or expired.
type Entry struct {
	Seq    int64
	Grant  Grant // the grant as it stands now
	Action string
	At     time.Time
	By     string
	Reason string
}

// Why is the entry in one line, as the user timeline shows it.
func (e Entry) Why() string {
	switch e.Action {
	case "created":
		return e.Grant.Why()
	case EndRevoked:
		s := fmt.Sprintf("%s revoked by %s", e.Grant.ID, e.By)
		if e.Reason != "" {
			s += ": " + e.Reason
		}
		return s
	}
	return fmt.Sprintf("%s expired (%s)", e.Grant.ID, e.Reason)
}

// Log reads the log of a user's grants in a scope, in order.
func Log(ctx context.Context, q Querier, user scope.Key) ([]Entry, error) {
	gs, err := List(ctx, q, user)
	if err != nil || len(gs) == 0 {
		return nil, err
	}
	byID := make(map[string]Grant, len(gs))
	ids := make([]string, len(gs))
	for i, g := range gs {
		byID[g.ID], ids[i] = g, g.ID
	}
	rows, err := q.Query(ctx, `SELECT seq, grant_id, action, at, by, reason FROM grant_log WHERE grant_id = ANY($1) ORDER BY seq`, ids)
	if err != nil {
		return nil, fmt.Errorf("read grant log of %s: %w", user, err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var id string
		if err := rows.Scan(&e.Seq, &id, &e.Action, &e.At, &e.By, &e.Reason); err != nil {
			return nil, fmt.Errorf("read grant log of %s: %w", user, err)
		}
		e.Grant, e.At = byID[id], e.At.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read grant log of %s: %w", user, err)
	}
	return out, nil
}
