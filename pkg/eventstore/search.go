package eventstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/scope"
)

// customersByEmailSQL finds the customers whose latest stored customer object (a customer.* event
// or a snapshot of the customer) carries the email, case-insensitively. It scans the customer
// events: an operator's search, not a hot path.
const customersByEmailSQL = `SELECT livemode, account, customer_id FROM (
		SELECT DISTINCT ON (livemode, coalesce(account, ''), customer_id)
			livemode, coalesce(account, '') AS account, customer_id,
			convert_from(payload, 'UTF8')::jsonb #>> '{data,object,email}' AS email
		FROM stripe_events
		WHERE customer_id IS NOT NULL
			AND type IN ('customer.created', 'customer.updated', 'customer.deleted', 'tollgate.snapshot.customer')
		ORDER BY livemode, coalesce(account, ''), customer_id, created DESC, id DESC
	) latest WHERE lower(email) = $1 ORDER BY customer_id, livemode DESC, account LIMIT $2`

// CustomersByEmail returns up to limit customers (each in its scope) whose latest stored
// customer object has the given email, compared case-insensitively.
func CustomersByEmail(ctx context.Context, q Querier, email string, limit int) ([]scope.Key, error) {
	rows, err := q.Query(ctx, customersByEmailSQL, strings.ToLower(strings.TrimSpace(email)), limit)
	if err != nil {
		return nil, fmt.Errorf("search customers by email: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (scope.Key, error) {
		var k scope.Key
		err := row.Scan(&k.Livemode, &k.Account, &k.ID)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("search customers by email: %w", err)
	}
	return keys, nil
}
