package eventstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/scope"
)

// The statements that read histories. Both look rows up by key and are planned for index use
// on sessions that price sequential scans out (enable_seqscan=off, as the processor's pool sets
// it): plan_test.go holds them to that as the table grows.
const (
	envelopesSQL = `SELECT e.livemode, coalesce(e.account, ''), e.customer_id, e.id, e.type, e.created
		FROM unnest($1::boolean[], $2::text[], $3::text[]) AS k(livemode, account, customer_id)
		JOIN stripe_events e ON e.customer_id = k.customer_id AND e.livemode = k.livemode AND coalesce(e.account, '') = k.account`
	// envelopesAfterSQL is envelopesSQL for the events after a checkpoint: the
	// created bound is part of the index condition (stripe_events_customer_history ends in
	// created, id; LATERAL with OFFSET 0, which Postgres cannot flatten, keeps it a per-customer index lookup, never a merge over the whole
	// index), so a customer with 100,000 stored events reads only its tail.
	envelopesAfterSQL = `SELECT e.livemode, coalesce(e.account, ''), e.customer_id, e.id, e.type, e.created
		FROM unnest($1::boolean[], $2::text[], $3::text[], $4::bigint[]) AS k(livemode, account, customer_id, after)
		CROSS JOIN LATERAL (SELECT * FROM stripe_events s WHERE s.customer_id = k.customer_id AND s.livemode = k.livemode
			AND coalesce(s.account, '') = k.account AND s.created > k.after OFFSET 0) e`
	payloadsSQL = `SELECT livemode, coalesce(account, ''), customer_id, id, payload FROM stripe_events WHERE id = ANY($1)`
)

// Envelope is a stored event without its payload: what a derivation needs of an event whose
// object it does not read.
type Envelope struct {
	Customer scope.Key // the customer in the event's scope
	ID       string
	Type     string
	Created  int64 // Stripe's created, Unix seconds
}

// ForEachEnvelope calls fn with the envelope of every stored event of the given customers (each
// in its scope: an event of the same customer id in another scope is not theirs), in no
// particular order (the derivation orders a history itself). It stops at the first error fn
// returns and returns it wrapped. Reading through a transaction that holds the customers' locks,
// it sees every event committed before the locks were taken.
func ForEachEnvelope(ctx context.Context, q Querier, customers []scope.Key, fn func(Envelope) error) error {
	livemode, account, id := scope.Columns(customers)
	rows, err := q.Query(ctx, envelopesSQL, livemode, account, id)
	if err != nil {
		return fmt.Errorf("load history ids: %w", err)
	}
	var e Envelope
	if _, err := pgx.ForEachRow(rows, []any{&e.Customer.Livemode, &e.Customer.Account, &e.Customer.ID, &e.ID, &e.Type, &e.Created}, func() error { return fn(e) }); err != nil {
		return fmt.Errorf("load history ids: %w", err)
	}
	return nil
}

// ForEachEnvelopeAfter is ForEachEnvelope for the events of customers[i] with created >
// after[i] only (the tail after a checkpoint; math.MinInt64 for a whole history). after must be
// as long as customers.
func ForEachEnvelopeAfter(ctx context.Context, q Querier, customers []scope.Key, after []int64, fn func(Envelope) error) error {
	if len(after) != len(customers) {
		return fmt.Errorf("load history tails: %d bounds for %d customers", len(after), len(customers))
	}
	livemode, account, id := scope.Columns(customers)
	rows, err := q.Query(ctx, envelopesAfterSQL, livemode, account, id, after)
	if err != nil {
		return fmt.Errorf("load history tails: %w", err)
	}
	var e Envelope
	if _, err := pgx.ForEachRow(rows, []any{&e.Customer.Livemode, &e.Customer.Account, &e.Customer.ID, &e.ID, &e.Type, &e.Created}, func() error { return fn(e) }); err != nil {
		return fmt.Errorf("load history tails: %w", err)
	}
	return nil
}

// Stored is a stored event's raw payload, exactly as received, with its customer in its scope.
type Stored struct {
	Customer scope.Key
	ID       string
	Payload  []byte
}

// Payloads reads the stored payloads of the given event ids, in no particular order; ids not
// stored are absent. Each Payload is a slice of its own that the caller may keep.
func Payloads(ctx context.Context, q Querier, ids []string) ([]Stored, error) {
	rows, err := q.Query(ctx, payloadsSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("load %d events: %w", len(ids), err)
	}
	var out []Stored
	var s Stored
	_, err = pgx.ForEachRow(rows, []any{&s.Customer.Livemode, &s.Customer.Account, &s.Customer.ID, &s.ID, &s.Payload}, func() error {
		out = append(out, s) // pgx hands out a fresh slice per row
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %d events: %w", len(ids), err)
	}
	return out, nil
}

// Customers lists up to limit customers that have events, each in its scope, in scope.Compare
// order, after the given key (the zero Key to start). It pages through every customer of every
// scope for a full replay.
func Customers(ctx context.Context, q Querier, after scope.Key, limit int) ([]scope.Key, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT livemode, coalesce(account, ''), customer_id FROM stripe_events
		WHERE customer_id IS NOT NULL AND (livemode, coalesce(account, ''), customer_id) > ($1, $2, $3)
		ORDER BY 1, 2, 3 LIMIT $4`, after.Livemode, after.Account, after.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (scope.Key, error) {
		var k scope.Key
		err := row.Scan(&k.Livemode, &k.Account, &k.ID)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	return keys, nil
}

// CountCustomers is the number of distinct customers, each in its scope, that have events (what
// Customers pages through).
func CountCustomers(ctx context.Context, q Querier) (int, error) {
	rows, err := q.Query(ctx, `SELECT count(*) FROM (SELECT DISTINCT livemode, coalesce(account, ''), customer_id
		FROM stripe_events WHERE customer_id IS NOT NULL) c`)
	if err != nil {
		return 0, fmt.Errorf("count customers: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int])
	if err != nil {
		return 0, fmt.Errorf("count customers: %w", err)
	}
	return n, nil
}

// CustomerScopes is the customer id in every scope it has stored events of, in scope.Compare
// order (none when it has no events).
func CustomerScopes(ctx context.Context, q Querier, customerID string) ([]scope.Key, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT livemode, coalesce(account, '') FROM stripe_events
		WHERE customer_id = $1 ORDER BY 1, 2`, customerID)
	if err != nil {
		return nil, fmt.Errorf("list scopes of customer %s: %w", customerID, err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (scope.Key, error) {
		k := scope.Key{ID: customerID}
		err := row.Scan(&k.Livemode, &k.Account)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list scopes of customer %s: %w", customerID, err)
	}
	return keys, nil
}
