// Package eventstore is the append-only store of every Stripe event Tollgate accepted: one row per
// event id, the raw bytes exactly as received. The primary key is the permanent dedupe.
package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Append stores the events in one round trip, ignoring ids already stored, and returns how many
// rows were new. Events are stored with their raw bytes; a repeated id keeps the first copy.
func Append(ctx context.Context, q Querier, events []stripeevent.Event) (int64, error) {
	if len(events) == 0 {
		return 0, nil
	}
	n := len(events)
	ids, types, accounts, versions, customers := make([]string, n), make([]string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	created, livemode, payloads := make([]int64, n), make([]bool, n), make([][]byte, n)
	for i, e := range events {
		ids[i], types[i], created[i], livemode[i], payloads[i] = e.ID, e.Type, e.Created, e.Livemode, e.Raw
		accounts[i], versions[i], customers[i] = nullable(e.Account), nullable(e.APIVersion), nullable(e.CustomerID)
	}
	tag, err := q.Exec(ctx, `INSERT INTO stripe_events (id, type, created, livemode, api_version, account, customer_id, payload)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::boolean[], $5::text[], $6::text[], $7::text[], $8::bytea[])
		ON CONFLICT (id) DO NOTHING`, ids, types, created, livemode, versions, accounts, customers, payloads)
	if err != nil {
		return 0, fmt.Errorf("append %d events: %w", n, err)
	}
	return tag.RowsAffected(), nil
}

// Histories loads the stored events of the given customers, each customer's in (created, id)
// order. Ties within a second are ordered by the derivation's own ordering function; this order
// only makes reads predictable.
func Histories(ctx context.Context, q Querier, customerIDs []string) (map[string][]stripeevent.Event, error) {
	rows, err := q.Query(ctx, `SELECT customer_id, payload FROM stripe_events
		WHERE customer_id = ANY($1) ORDER BY customer_id, created, id`, customerIDs)
	if err != nil {
		return nil, fmt.Errorf("load histories: %w", err)
	}
	defer rows.Close()
	out := make(map[string][]stripeevent.Event, len(customerIDs))
	for rows.Next() {
		var customer string
		var payload []byte
		if err := rows.Scan(&customer, &payload); err != nil {
			return nil, fmt.Errorf("load histories: %w", err)
		}
		ev, err := stripeevent.ParseValid(payload)
		if err != nil {
			// Only events Parse accepted are stored, so validation is skipped; a row that no
			// longer parses is corruption.
			return nil, fmt.Errorf("stored event of customer %s: %w", customer, err)
		}
		out[customer] = append(out[customer], ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load histories: %w", err)
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

// Count is the number of stored events and the time the newest was received (zero when none).
func Count(ctx context.Context, q Querier) (int64, time.Time, error) {
	rows, err := q.Query(ctx, `SELECT count(*), coalesce(max(received_at), 'epoch') FROM stripe_events`)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count events: %w", err)
	}
	type result struct {
		N    int64
		Last time.Time
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[result])
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count events: %w", err)
	}
	return r.N, r.Last, nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
