// Package entitlement is the read model: one row per customer (the derivation of its whole
// history) and one per app user (the union of that user's customers). The processor writes it
// inside the transaction that stored the events; the query API only reads it. It holds every
// statement on customer_entitlements and user_entitlements.
package entitlement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// ErrNotFound means no read model row exists for the id.
var ErrNotFound = errors.New("entitlement not found")

// Subscription is a subscription as the query API shows it.
type Subscription struct {
	ID                string     `json:"id"`
	CustomerID        string     `json:"customer_id"`
	Status            string     `json:"status"`
	PriceIDs          []string   `json:"price_ids"`
	ProductIDs        []string   `json:"product_ids"`
	CurrentPeriodEnd  *time.Time `json:"current_period_end"`
	CancelAtPeriodEnd bool       `json:"cancel_at_period_end"`
	TrialEnd          *time.Time `json:"trial_end"`
	EndedAt           *time.Time `json:"ended_at"`
}

// Grant is an active grant as the answer lists it: access an operator gave outside Stripe.
type Grant struct {
	ID        string           `json:"id"`
	Features  []string         `json:"features"`
	Limits    map[string]int64 `json:"limits"`
	Until     *time.Time       `json:"until"` // nil: until revoked
	Reason    string           `json:"reason"`
	By        string           `json:"by"` // the name of the admin token that gave it
	CreatedAt time.Time        `json:"created_at"`
}

// Customer is one customer's row in its scope: its derived state and entitlement.
type Customer struct {
	Scope            scope.Scope
	CustomerID       string
	UserID           string // "" when unknown
	Deleted          bool
	Premium          bool
	Status           string
	Features         []string
	Limits           map[string]int64 // never nil
	Subscriptions    []Subscription
	LastEventID      string
	LastEventCreated time.Time
	UpdatedAt        time.Time // set by the database on write
}

// User is one app user's row in one scope: the union of the rows of all the customers of that
// scope that carry its id, with the user's grants active when it was written on top.
type User struct {
	Scope            scope.Scope
	UserID           string
	CustomerIDs      []string // sorted
	Premium          bool
	Status           string
	Features         []string
	Limits           map[string]int64 // never nil
	Grants           []Grant          // the active grants, oldest first; never nil
	Subscriptions    []Subscription   // by customer id, then subscription id
	LastEventID      string           // of the latest event of all the user's customers; "" for a user known only by grants
	LastEventCreated time.Time        // zero for a user known only by grants
	UpdatedAt        time.Time        // set by the database on write
}

// FromState is the row of a derived customer state of scope sc under the given rules.
func FromState(sc scope.Scope, s subscription.State, rules subscription.Rules) Customer {
	ent := s.Entitlement(rules)
	c := Customer{
		Scope:            sc,
		CustomerID:       s.CustomerID,
		UserID:           s.UserID,
		Deleted:          s.Deleted,
		Premium:          ent.Premium,
		Status:           ent.Status,
		Features:         nonNil(ent.Features),
		Limits:           nonNilMap(ent.Limits),
		Subscriptions:    make([]Subscription, 0, len(s.Subscriptions)),
		LastEventID:      s.LastEventID,
		LastEventCreated: subscription.TimeOf(s.LastEventCreated),
	}
	for _, sub := range s.Subscriptions {
		c.Subscriptions = append(c.Subscriptions, Subscription{
			ID:                sub.ID,
			CustomerID:        s.CustomerID,
			Status:            sub.Status,
			PriceIDs:          nonNil(sub.PriceIDs),
			ProductIDs:        nonNil(sub.ProductIDs),
			CurrentPeriodEnd:  sub.CurrentPeriodEnd,
			CancelAtPeriodEnd: sub.CancelAtPeriodEnd,
			TrialEnd:          sub.TrialEnd,
			EndedAt:           sub.EndedAt,
		})
	}
	return c
}

// Same reports whether two rows give the same answer (UpdatedAt aside).
func (c Customer) Same(o Customer) bool {
	a, _ := json.Marshal(c.Subscriptions)
	b, _ := json.Marshal(o.Subscriptions)
	return c.Scope == o.Scope && c.CustomerID == o.CustomerID && c.UserID == o.UserID && c.Deleted == o.Deleted &&
		c.Premium == o.Premium && c.Status == o.Status && slices.Equal(c.Features, o.Features) &&
		maps.Equal(nonNilMap(c.Limits), nonNilMap(o.Limits)) && string(a) == string(b) && c.LastEventID == o.LastEventID && c.LastEventCreated.Equal(o.LastEventCreated)
}

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

const customerColumns = `livemode, account, customer_id, coalesce(user_id, ''), deleted, premium, status, features, limits, subscriptions,
	last_event_id, last_event_created, updated_at`

// userColumns are what scanUser reads of a user row.
const userColumns = `customer_ids, premium, status, features, limits, grants, subscriptions, coalesce(last_event_id, ''),
	last_event_created, updated_at`

// The lookups the query API answers with. They read by key and are planned for index use on
// sessions that price sequential scans out (enable_seqscan=off, as the query API's pool sets
// it): plan_test.go holds them to that as the tables grow.
const (
	getUserSQL = `SELECT ` + userColumns + ` FROM user_entitlements
			WHERE livemode = $1 AND account = $2 AND user_id = $3`
	getCustomerSQL = `SELECT ` + customerColumns + ` FROM customer_entitlements
			WHERE livemode = $1 AND account = $2 AND customer_id = $3`
)

func scanCustomer(row pgx.Row) (Customer, error) {
	var c Customer
	var subs, limits []byte
	if err := row.Scan(&c.Scope.Livemode, &c.Scope.Account, &c.CustomerID, &c.UserID, &c.Deleted, &c.Premium, &c.Status, &c.Features, &limits, &subs,
		&c.LastEventID, &c.LastEventCreated, &c.UpdatedAt); err != nil {
		return Customer{}, err
	}
	if err := decode(subs, &c.Subscriptions); err != nil {
		return Customer{}, fmt.Errorf("decode subscriptions of %s: %w", c.CustomerID, err)
	}
	if err := decode(limits, &c.Limits); err != nil {
		return Customer{}, fmt.Errorf("decode limits of %s: %w", c.CustomerID, err)
	}
	c.Limits = nonNilMap(c.Limits)
	c.LastEventCreated = c.LastEventCreated.UTC()
	c.UpdatedAt = c.UpdatedAt.UTC()
	return c, nil
}

// LoadCustomers reads the current rows of the given customers, each in its scope; missing ones are
// absent from the map. Inside the processor's transaction it locks them (FOR UPDATE).
func LoadCustomers(ctx context.Context, q Querier, customers []scope.Key) (map[scope.Key]Customer, error) {
	livemode, account, ids := scope.Columns(customers)
	rows, err := q.Query(ctx, `SELECT `+customerColumns+` FROM customer_entitlements
		WHERE (livemode, account, customer_id) IN (SELECT * FROM unnest($1::boolean[], $2::text[], $3::text[]))
		ORDER BY livemode, account, customer_id FOR UPDATE`, livemode, account, ids)
	if err != nil {
		return nil, fmt.Errorf("load customer entitlements: %w", err)
	}
	defer rows.Close()
	out := make(map[scope.Key]Customer, len(customers))
	for rows.Next() {
		c, err := scanCustomer(rows)
		if err != nil {
			return nil, fmt.Errorf("load customer entitlements: %w", err)
		}
		out[c.Scope.Of(c.CustomerID)] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load customer entitlements: %w", err)
	}
	return out, nil
}

// SaveCustomers upserts customer rows in one round trip.
func SaveCustomers(ctx context.Context, q Querier, cs []Customer) error {
	if len(cs) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, c := range cs {
		subs, err := json.Marshal(c.Subscriptions)
		if err != nil {
			return fmt.Errorf("encode subscriptions of %s: %w", c.CustomerID, err)
		}
		limits, err := json.Marshal(nonNilMap(c.Limits))
		if err != nil {
			return fmt.Errorf("encode limits of %s: %w", c.CustomerID, err)
		}
		b.Queue(`INSERT INTO customer_entitlements (customer_id, user_id, deleted, premium, status, features,
				subscriptions, last_event_id, last_event_created, livemode, account, limits, updated_at)
			VALUES ($1, nullif($2, ''), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
			ON CONFLICT (livemode, account, customer_id) DO UPDATE SET user_id = excluded.user_id, deleted = excluded.deleted,
				premium = excluded.premium, status = excluded.status, features = excluded.features,
				subscriptions = excluded.subscriptions, last_event_id = excluded.last_event_id,
				last_event_created = excluded.last_event_created, limits = excluded.limits, updated_at = now()`,
			c.CustomerID, c.UserID, c.Deleted, c.Premium, c.Status, nonNil(c.Features), subs,
			c.LastEventID, c.LastEventCreated, c.Scope.Livemode, c.Scope.Account, limits)
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save customer entitlements: %w", err)
	}
	return nil
}

// RefreshUsers is RefreshUsersWithGrants without grants: a user's row is the union of its
// customers' rows alone, and a user without customers has none. Once grants exist every writer
// must use RefreshUsersWithGrants (pkg/grant.RefreshUsers), or a write drops the user's grants
// from the answer until the next.
func RefreshUsers(ctx context.Context, q Querier, users []scope.Key) error {
	_, err := RefreshUsersWithGrants(ctx, q, users, nil)
	return err
}

// RefreshUsersWithGrants rebuilds the user rows of the given users, each in its scope, from the
// rows of their customers of that scope and the user's active grants (grants[user], oldest
// first, as the answer lists them), and deletes the row of a user with neither. A user with
// grants and no customer has a row of its own: no customer ids, status none, no last event.
// Callers serialize per user (the processor holds an advisory lock on each user id) so
// concurrent writers cannot interleave. It returns the rows it wrote, as GetUsers would read
// them back in the same transaction (the notifications are made from them without reading
// them again); a deleted user is absent.
func RefreshUsersWithGrants(ctx context.Context, q Querier, users []scope.Key, grants map[scope.Key][]Grant) (map[scope.Key]User, error) {
	if len(users) == 0 {
		return nil, nil
	}
	livemode, account, ids := scope.Columns(users)
	rows, err := q.Query(ctx, `SELECT `+customerColumns+` FROM customer_entitlements
		WHERE (livemode, account, user_id) IN (SELECT * FROM unnest($1::boolean[], $2::text[], $3::text[]))
		ORDER BY livemode, account, user_id, customer_id`, livemode, account, ids)
	if err != nil {
		return nil, fmt.Errorf("load customers of users: %w", err)
	}
	byUser := make(map[scope.Key][]Customer, len(users))
	for rows.Next() {
		c, err := scanCustomer(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("load customers of users: %w", err)
		}
		k := c.Scope.Of(c.UserID)
		byUser[k] = append(byUser[k], c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load customers of users: %w", err)
	}

	b := &pgx.Batch{}
	written := make([]User, 0, len(users)) // in the order of the upserts queued
	for _, u := range users {
		cs, gs := byUser[u], grants[u]
		if len(cs) == 0 && len(gs) == 0 {
			b.Queue(`DELETE FROM user_entitlements WHERE livemode = $1 AND account = $2 AND user_id = $3`, u.Livemode, u.Account, u.ID)
			continue
		}
		v := MergeWithGrants(u.Scope, cs, gs)
		v.UserID = u.ID
		normalizeUser(&v)
		subs, err := json.Marshal(v.Subscriptions)
		if err != nil {
			return nil, fmt.Errorf("encode subscriptions of user %s: %w", u, err)
		}
		limits, err := json.Marshal(v.Limits)
		if err != nil {
			return nil, fmt.Errorf("encode limits of user %s: %w", u, err)
		}
		grantsJSON, err := json.Marshal(v.Grants)
		if err != nil {
			return nil, fmt.Errorf("encode grants of user %s: %w", u, err)
		}
		var lastCreated *time.Time
		if v.LastEventID != "" {
			lastCreated = &v.LastEventCreated
		}
		i := len(written)
		b.Queue(`INSERT INTO user_entitlements (user_id, customer_ids, premium, status, features, subscriptions,
				last_event_id, last_event_created, livemode, account, limits, grants, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, nullif($7, ''), $8, $9, $10, $11, $12, now())
			ON CONFLICT (livemode, account, user_id) DO UPDATE SET customer_ids = excluded.customer_ids, premium = excluded.premium,
				status = excluded.status, features = excluded.features, subscriptions = excluded.subscriptions,
				last_event_id = excluded.last_event_id, last_event_created = excluded.last_event_created,
				limits = excluded.limits, grants = excluded.grants, updated_at = now()
			RETURNING updated_at`,
			u.ID, v.CustomerIDs, v.Premium, v.Status, v.Features, subs, v.LastEventID, lastCreated, u.Livemode, u.Account,
			limits, grantsJSON).QueryRow(func(row pgx.Row) error {
			w := &written[i] // the slice as it is when the batch is read, every row appended
			if err := row.Scan(&w.UpdatedAt); err != nil {
				return err
			}
			w.UpdatedAt = w.UpdatedAt.UTC()
			return nil
		})
		written = append(written, v)
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("save user entitlements: %w", err)
	}
	out := make(map[scope.Key]User, len(written))
	for _, u := range written {
		out[u.Scope.Of(u.UserID)] = u
	}
	return out, nil
}

// Merge is the row of a user over the rows of all the user's customers (cs, at least one, all of
// one scope): the union RefreshUsers stores. UserID and UpdatedAt are left unset, Scope is cs's. It does not modify cs.
func Merge(cs []Customer) User {
	return MergeWithGrants(cs[0].Scope, cs, nil)
}

// MergeWithGrants is the row of a user of scope sc over the rows of its customers (cs, possibly
// none) and its active grants (gs, oldest first): the union of the customers as Merge makes it
// with the grants' features and limits on top (subscription.WithGrants). UserID and UpdatedAt
// are left unset. It modifies neither cs nor gs.
func MergeWithGrants(sc scope.Scope, cs []Customer, gs []Grant) User {
	ents := make([]subscription.Entitlement, 0, len(cs))
	v := User{Scope: sc, CustomerIDs: make([]string, 0, len(cs)), Subscriptions: []Subscription{}, Grants: make([]Grant, 0, len(gs))}
	var last Customer
	for i, c := range cs {
		ents = append(ents, subscription.Entitlement{Premium: c.Premium, Status: c.Status, Features: c.Features, Limits: c.Limits})
		v.CustomerIDs = append(v.CustomerIDs, c.CustomerID)
		v.Subscriptions = append(v.Subscriptions, c.Subscriptions...)
		if i == 0 || c.LastEventCreated.After(last.LastEventCreated) ||
			(c.LastEventCreated.Equal(last.LastEventCreated) && c.LastEventID > last.LastEventID) {
			last = c
		}
	}
	terms := make([]subscription.Grant, 0, len(gs))
	for _, g := range gs {
		terms = append(terms, subscription.Grant{Features: g.Features, Limits: g.Limits})
		v.Grants = append(v.Grants, g)
	}
	e := subscription.WithGrants(subscription.Merge(ents...), terms...)
	v.Premium, v.Status, v.Features, v.Limits = e.Premium, e.Status, nonNil(e.Features), nonNilMap(e.Limits)
	sort.Strings(v.CustomerIDs)
	sort.Slice(v.Subscriptions, func(i, j int) bool {
		a, b := v.Subscriptions[i], v.Subscriptions[j]
		if a.CustomerID != b.CustomerID {
			return a.CustomerID < b.CustomerID
		}
		return a.ID < b.ID
	})
	v.LastEventID, v.LastEventCreated = last.LastEventID, last.LastEventCreated
	return v
}

// GetUser reads the row of an app user in a scope, times in UTC and lists never nil. ErrNotFound
// when no customer of that scope carries the user id.
func GetUser(ctx context.Context, q Querier, k scope.Key) (User, error) {
	return scanUser(q.QueryRow(ctx, getUserSQL, k.Livemode, k.Account, k.ID), k)
}

// GetUsers reads the rows of the given users, each in its scope, as GetUser does, in one round
// trip (GetUser's statement for each, pipelined in one batch); users without a row are absent
// from the map.
func GetUsers(ctx context.Context, q Querier, keys []scope.Key) (map[scope.Key]User, error) {
	out := make(map[scope.Key]User, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	for _, k := range keys {
		b.Queue(getUserSQL, k.Livemode, k.Account, k.ID)
	}
	br := q.SendBatch(ctx, b)
	for _, k := range keys {
		u, err := scanUser(br.QueryRow(), k)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			_ = br.Close()
			return nil, err
		default:
			out[k] = u
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("read entitlements of %d users: %w", len(keys), err)
	}
	return out, nil
}

func scanUser(row pgx.Row, k scope.Key) (User, error) {
	userID := k.ID
	u := User{Scope: k.Scope, UserID: userID}
	err := scanUserColumns(row, &u)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("user %s: %w", userID, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("read entitlement of user %s: %w", userID, err)
	}
	return u, nil
}

// scanUserColumns reads userColumns into u, times in UTC and lists never nil; the columns before
// them (scope, user id) go to before.
func scanUserColumns(row pgx.Row, u *User, before ...any) error {
	var subs, limits, grants []byte
	var lastCreated *time.Time
	if err := row.Scan(append(before, &u.CustomerIDs, &u.Premium, &u.Status, &u.Features, &limits, &grants, &subs,
		&u.LastEventID, &lastCreated, &u.UpdatedAt)...); err != nil {
		return err
	}
	if err := decode(subs, &u.Subscriptions); err != nil {
		return fmt.Errorf("decode subscriptions of user %s: %w", u.UserID, err)
	}
	if err := decode(limits, &u.Limits); err != nil {
		return fmt.Errorf("decode limits of user %s: %w", u.UserID, err)
	}
	if err := decode(grants, &u.Grants); err != nil {
		return fmt.Errorf("decode grants of user %s: %w", u.UserID, err)
	}
	normalizeUser(u)
	if lastCreated != nil {
		u.LastEventCreated = lastCreated.UTC()
	}
	u.UpdatedAt = u.UpdatedAt.UTC()
	return nil
}

// normalizeUser makes u's lists and maps non-nil, as the answers show them ([] and {}, never null).
func normalizeUser(u *User) {
	u.CustomerIDs, u.Features, u.Limits = nonNil(u.CustomerIDs), nonNil(u.Features), nonNilMap(u.Limits)
	if u.Subscriptions == nil {
		u.Subscriptions = []Subscription{}
	}
	if u.Grants == nil {
		u.Grants = []Grant{}
	}
	for i := range u.Grants {
		u.Grants[i].Features, u.Grants[i].Limits = nonNil(u.Grants[i].Features), nonNilMap(u.Grants[i].Limits)
	}
}

// GetCustomer reads the row of a Stripe customer in a scope, times in UTC and lists never nil.
// ErrNotFound when no event of it was seen in that scope.
func GetCustomer(ctx context.Context, q Querier, k scope.Key) (Customer, error) {
	customerID := k.ID
	c, err := scanCustomer(q.QueryRow(ctx, getCustomerSQL, k.Livemode, k.Account, customerID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Customer{}, fmt.Errorf("customer %s: %w", customerID, ErrNotFound)
	}
	if err != nil {
		return Customer{}, fmt.Errorf("read entitlement of customer %s: %w", customerID, err)
	}
	c.Features = nonNil(c.Features)
	if c.Subscriptions == nil {
		c.Subscriptions = []Subscription{}
	}
	return c, nil
}

func nonNilMap(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
