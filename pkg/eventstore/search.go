package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/scope"
)

// SearchTimeout bounds one search statement of the console (statement_timeout, and the
// context's deadline): an operator's search must never hold a connection the pipeline needs.
const SearchTimeout = 2 * time.Second

// customersByEmailSQL finds the customers whose latest stored customer object (a customer.* event
// or a snapshot of the customer) carries the email, case-insensitively. The candidates come from
// the expression index stripe_events_customer_email (migration 000011, tollgate_event_email);
// only their latest customer event is read (stripe_events_customer_history), never every customer
// event of the store; at most 1,000 candidates (customers that ever had the email) are read. The
// type list must stay the index's predicate.
const customersByEmailSQL = `WITH candidates AS (
		SELECT DISTINCT livemode, coalesce(account, '') AS account, customer_id
		FROM stripe_events
		WHERE tollgate_event_email(payload) = $1
			AND customer_id IS NOT NULL
			AND type IN ('customer.created', 'customer.updated', 'customer.deleted', 'tollgate.snapshot.customer')
		LIMIT 1000
	)
	SELECT c.livemode, c.account, c.customer_id FROM candidates c
	CROSS JOIN LATERAL (
		SELECT tollgate_event_email(e.payload) AS email FROM stripe_events e
		WHERE e.customer_id = c.customer_id AND e.livemode = c.livemode AND coalesce(e.account, '') = c.account
			AND e.type IN ('customer.created', 'customer.updated', 'customer.deleted', 'tollgate.snapshot.customer')
		ORDER BY e.created DESC, e.id DESC LIMIT 1
	) latest
	WHERE latest.email = $1
	ORDER BY c.customer_id, c.livemode DESC, c.account LIMIT $2 OFFSET $3`

// CustomersByEmail returns up to limit customers (each in its scope) whose latest stored
// customer object has the given email, compared case-insensitively: CustomersByEmailPage's first
// page.
func CustomersByEmail(ctx context.Context, q Querier, email string, limit int) ([]scope.Key, error) {
	return CustomersByEmailPage(ctx, q, email, limit, 0)
}

// CustomersByEmailPage is the page of CustomersByEmail's answer that skips offset customers and
// holds at most limit. It reads an index, never every customer event, and gives up after
// SearchTimeout (an error wrapping context.DeadlineExceeded, or Postgres's statement timeout).
// When q can begin a transaction (a pool) or is one, the statement runs with statement_timeout.
func CustomersByEmailPage(ctx context.Context, q Querier, email string, limit, offset int) ([]scope.Key, error) {
	ctx, cancel := context.WithTimeout(ctx, SearchTimeout)
	defer cancel()
	email = strings.ToLower(strings.TrimSpace(email))
	var keys []scope.Key
	run := func(q Querier) error {
		if _, err := q.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", SearchTimeout.Milliseconds())); err != nil {
			return err
		}
		rows, err := q.Query(ctx, customersByEmailSQL, email, limit, offset)
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (scope.Key, error) {
			var k scope.Key
			err := row.Scan(&k.Livemode, &k.Account, &k.ID)
			return k, err
		})
		return err
	}
	var err error
	switch db := q.(type) {
	case pgx.Tx:
		err = run(db)
	case interface {
		Begin(context.Context) (pgx.Tx, error)
	}:
		err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return run(tx) })
	default:
		err = errors.New("need a pool or a transaction for the statement timeout")
	}
	if err != nil {
		return nil, fmt.Errorf("search customers by email: %w", err)
	}
	return keys, nil
}
