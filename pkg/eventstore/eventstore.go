// Package eventstore is the append-only store of every Stripe event Tollgate accepted: one row per
// event id, the raw bytes exactly as received. The primary key is the permanent dedupe. It holds
// every statement on stripe_events and on dead_letters (events the processor set aside).
package eventstore

import (
	"context"
	"fmt"

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

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
