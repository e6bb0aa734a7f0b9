package entitlement

import (
	"context"
	"fmt"
)

// RecentUsers reads up to limit user rows, the most recently changed first (updated_at
// descending), times in UTC and lists never nil as GetUser returns them. It takes no locks and
// runs in a READ ONLY transaction or on a hot standby. The query API warms its cache with it at
// start; there is no index on updated_at, so it is one scan of the table with a top-N sort,
// meant for a start, not for a request.
func RecentUsers(ctx context.Context, q Querier, limit int) ([]User, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("recent user entitlements: limit %d is not positive", limit)
	}
	rows, err := q.Query(ctx, `SELECT livemode, account, user_id, `+userColumns+` FROM user_entitlements
			ORDER BY updated_at DESC, livemode, account, user_id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("recent user entitlements: %w", err)
	}
	defer rows.Close()
	out := make([]User, 0, min(limit, 1024))
	for rows.Next() {
		var u User
		if err := scanUserColumns(rows, &u, &u.Scope.Livemode, &u.Scope.Account, &u.UserID); err != nil {
			return nil, fmt.Errorf("recent user entitlements: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("recent user entitlements: %w", err)
	}
	return out, nil
}

// RecentCustomers is RecentUsers for customer rows, as GetCustomer returns them.
func RecentCustomers(ctx context.Context, q Querier, limit int) ([]Customer, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("recent customer entitlements: limit %d is not positive", limit)
	}
	rows, err := q.Query(ctx, `SELECT `+customerColumns+` FROM customer_entitlements
		ORDER BY updated_at DESC, livemode, account, customer_id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("recent customer entitlements: %w", err)
	}
	defer rows.Close()
	out := make([]Customer, 0, min(limit, 1024))
	for rows.Next() {
		c, err := scanCustomer(rows)
		if err != nil {
			return nil, fmt.Errorf("recent customer entitlements: %w", err)
		}
		c.Features = nonNil(c.Features)
		if c.Subscriptions == nil {
			c.Subscriptions = []Subscription{}
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("recent customer entitlements: %w", err)
	}
	return out, nil
}
