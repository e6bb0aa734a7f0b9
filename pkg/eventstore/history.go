package eventstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The statements that read histories. Both look rows up by key and are planned for index use
// on sessions that price sequential scans out (enable_seqscan=off, as the processor's pool sets
// it): plan_test.go holds them to that as the table grows.
const (
	envelopesSQL = `SELECT customer_id, id, type, created FROM stripe_events WHERE customer_id = ANY($1)`
	payloadsSQL  = `SELECT customer_id, id, payload FROM stripe_events WHERE id = ANY($1)`
)

// Envelope is a stored event without its payload: what a derivation needs of an event whose
// object it does not read.
type Envelope struct {
	CustomerID string
	ID         string
	Type       string
	Created    int64 // Stripe's created, Unix seconds
}

// ForEachEnvelope calls fn with the envelope of every stored event of the given customers, in no
// particular order (the derivation orders a history itself). It stops at the first error fn
// returns and returns it wrapped. Reading through a transaction that holds the customers' locks,
// it sees every event committed before the locks were taken.
func ForEachEnvelope(ctx context.Context, q Querier, customerIDs []string, fn func(Envelope) error) error {
	rows, err := q.Query(ctx, envelopesSQL, customerIDs)
	if err != nil {
		return fmt.Errorf("load history ids: %w", err)
	}
	var e Envelope
	if _, err := pgx.ForEachRow(rows, []any{&e.CustomerID, &e.ID, &e.Type, &e.Created}, func() error { return fn(e) }); err != nil {
		return fmt.Errorf("load history ids: %w", err)
	}
	return nil
}

// Stored is a stored event's raw payload, exactly as received, with its customer.
type Stored struct {
	CustomerID string
	ID         string
	Payload    []byte
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
	_, err = pgx.ForEachRow(rows, []any{&s.CustomerID, &s.ID, &s.Payload}, func() error {
		out = append(out, s) // pgx hands out a fresh slice per row
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %d events: %w", len(ids), err)
	}
	return out, nil
}

// Customers lists up to limit customer ids that have events, in id order, after the given id
// ("" to start). It pages through every customer for a full replay.
func Customers(ctx context.Context, q Querier, after string, limit int) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT customer_id FROM stripe_events
		WHERE customer_id IS NOT NULL AND customer_id > $1 ORDER BY customer_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	return ids, nil
}

// CountCustomers is the number of distinct customers that have events (what Customers pages
// through).
func CountCustomers(ctx context.Context, q Querier) (int, error) {
	rows, err := q.Query(ctx, `SELECT count(DISTINCT customer_id) FROM stripe_events WHERE customer_id IS NOT NULL`)
	if err != nil {
		return 0, fmt.Errorf("count customers: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int])
	if err != nil {
		return 0, fmt.Errorf("count customers: %w", err)
	}
	return n, nil
}
