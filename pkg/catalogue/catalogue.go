// Package catalogue is the flag catalogue: the feature and limit names an answer can carry, so
// that the query API's OpenFeature endpoint tells a flag that is off (false, 0) from a flag that
// does not exist (FLAG_NOT_FOUND). The processor writes it (the names of PLANS_FILE at start, a
// grant's names with the grant); the query API reads it whole and keeps it in memory. It holds
// every statement on flag_catalogue (migrations/000013).
package catalogue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Kind is what a name is: a feature (a boolean flag: is it in the answer's features) or a limit
// (an integer flag: the answer's limit, 0 when it has none).
type Kind string

// The kinds of names.
const (
	KindFeature Kind = "feature"
	KindLimit   Kind = "limit"
)

// Source is who named a name: PLANS_FILE or a grant.
type Source string

// The sources of names.
const (
	SourcePlans Source = "plans"
	SourceGrant Source = "grant"
)

// ErrInvalid is wrapped by Write and Add for an entry or a source they refuse.
var ErrInvalid = errors.New("invalid catalogue entry")

// Entry is one name and its kind.
type Entry struct {
	Name string
	Kind Kind
}

// Features are the entries of kind feature for names.
func Features(names ...string) []Entry { return entries(KindFeature, names) }

// Limits are the entries of kind limit for names.
func Limits(names ...string) []Entry { return entries(KindLimit, names) }

// FromPlans are the feature entries of a plans file's mapping of price or product ids to
// feature names (subscription.Rules.Plans), each name once, sorted.
func FromPlans(plans map[string][]string) []Entry {
	var names []string
	for _, fs := range plans {
		names = append(names, fs...)
	}
	slices.Sort(names)
	return Features(slices.Compact(names)...)
}

// FromPlanLimits are the limit entries of a plans file's mapping of price or product ids to the
// limits they give (subscription.Rules.Limits), each name once, sorted.
func FromPlanLimits[L any](limits map[string]map[string]L) []Entry {
	var names []string
	for _, ls := range limits {
		for n := range ls {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return Limits(slices.Compact(names)...)
}

func entries(k Kind, names []string) []Entry {
	out := make([]Entry, len(names))
	for i, n := range names {
		out[i] = Entry{Name: n, Kind: k}
	}
	return out
}

// Execer runs a statement: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Querier runs a query: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Write makes source's entries exactly entries: it adds the missing ones and deletes the others
// of that source, in one statement (atomic without a transaction). The processor calls it at
// start with PLANS_FILE's names; instances started with different files leave the last one's.
// Duplicates are ignored; an empty name or an unknown kind or source wraps ErrInvalid and writes
// nothing.
func Write(ctx context.Context, q Execer, source Source, entries []Entry) error {
	names, kinds, err := columns(source, entries)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `WITH want AS (SELECT * FROM unnest($2::text[], $3::text[]) AS w(name, kind)),
		gone AS (DELETE FROM flag_catalogue c WHERE c.source = $1
			AND NOT EXISTS (SELECT 1 FROM want w WHERE w.name = c.name AND w.kind = c.kind))
		INSERT INTO flag_catalogue (source, name, kind) SELECT $1, name, kind FROM want
		ON CONFLICT DO NOTHING`, string(source), names, kinds)
	if err != nil {
		return fmt.Errorf("write the %s flag catalogue: %w", source, err)
	}
	return nil
}

// Add adds the entries of source that are not there yet and removes none: a grant's names, in
// the transaction that records the grant, so that its flags exist once it commits. Errors as
// Write.
func Add(ctx context.Context, q Execer, source Source, entries []Entry) error {
	names, kinds, err := columns(source, entries)
	if err != nil || len(names) == 0 {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO flag_catalogue (source, name, kind)
		SELECT $1, name, kind FROM unnest($2::text[], $3::text[]) AS w(name, kind)
		ON CONFLICT DO NOTHING`, string(source), names, kinds)
	if err != nil {
		return fmt.Errorf("add to the %s flag catalogue: %w", source, err)
	}
	return nil
}

func columns(source Source, entries []Entry) (names, kinds []string, err error) {
	if source != SourcePlans && source != SourceGrant {
		return nil, nil, fmt.Errorf("%w: unknown source %q", ErrInvalid, source)
	}
	names, kinds = make([]string, 0, len(entries)), make([]string, 0, len(entries))
	for _, e := range entries {
		switch {
		case strings.TrimSpace(e.Name) == "":
			return nil, nil, fmt.Errorf("%w: empty name", ErrInvalid)
		case e.Kind != KindFeature && e.Kind != KindLimit:
			return nil, nil, fmt.Errorf("%w: %q: unknown kind %q", ErrInvalid, e.Name, e.Kind)
		}
		names, kinds = append(names, e.Name), append(kinds, string(e.Kind))
	}
	return names, kinds, nil
}

// Catalogue is the catalogue as read: each name once, with one kind. The zero value is empty.
// It is immutable, so safe for concurrent use.
type Catalogue struct {
	kinds map[string]Kind
	names []string // sorted
}

// Kind is name's kind; ok is false when the catalogue does not hold name.
func (c Catalogue) Kind(name string) (k Kind, ok bool) {
	k, ok = c.kinds[name]
	return k, ok
}

// Names are the names, sorted. The caller must not modify the slice.
func (c Catalogue) Names() []string { return c.names }

// Len is the number of names.
func (c Catalogue) Len() int { return len(c.names) }

// Load reads the whole catalogue. A name given two kinds (a grant's limit named like a plan's
// feature) gets one: PLANS_FILE's, else the one added first, so the answer does not depend on
// the order of rows.
func Load(ctx context.Context, q Querier) (Catalogue, error) {
	rows, err := q.Query(ctx, `SELECT name, kind FROM flag_catalogue
		ORDER BY source = 'plans' DESC, added_at, kind`)
	if err != nil {
		return Catalogue{}, fmt.Errorf("load the flag catalogue: %w", err)
	}
	c := Catalogue{kinds: map[string]Kind{}}
	var name, kind string
	_, err = pgx.ForEachRow(rows, []any{&name, &kind}, func() error {
		if _, dup := c.kinds[name]; !dup {
			c.kinds[name] = Kind(kind)
			c.names = append(c.names, name)
		}
		return nil
	})
	if err != nil {
		return Catalogue{}, fmt.Errorf("load the flag catalogue: %w", err)
	}
	slices.Sort(c.names)
	return c, nil
}
