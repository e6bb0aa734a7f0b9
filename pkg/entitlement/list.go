package entitlement

import (
	"context"
	"fmt"

	"github.com/tollgate/tollgate/pkg/scope"
)

// ListCustomers reads up to limit customer rows of scope sc with a customer_id greater than after,
// in customer_id order; after "" starts at the first. It takes no row locks, unlike LoadCustomers,
// so it runs in any transaction, a READ ONLY one included: readers that walk the whole read
// model (reconcile, reports) page through it with the last id of each page as the next after,
// inside one REPEATABLE READ transaction for a consistent snapshot.
func ListCustomers(ctx context.Context, q Querier, sc scope.Scope, after string, limit int) ([]Customer, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list customer entitlements: limit %d is not positive", limit)
	}
	rows, err := q.Query(ctx, `SELECT `+customerColumns+` FROM customer_entitlements
		WHERE livemode = $1 AND account = $2 AND customer_id > $3 ORDER BY customer_id LIMIT $4`,
		sc.Livemode, sc.Account, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list customer entitlements: %w", err)
	}
	defer rows.Close()
	out := make([]Customer, 0, limit)
	for rows.Next() {
		c, err := scanCustomer(rows)
		if err != nil {
			return nil, fmt.Errorf("list customer entitlements: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list customer entitlements: %w", err)
	}
	return out, nil
}
