package entitlement

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/scope"
)

// UserScopes returns the scopes in which the read model has a row for the user, live first.
func UserScopes(ctx context.Context, q Querier, userID string) ([]scope.Key, error) {
	return keys(ctx, q, "user scopes", `SELECT livemode, account, user_id FROM user_entitlements
		WHERE user_id = $1 ORDER BY livemode DESC, account`, userID)
}

// CustomersBySubscription returns the customers (each in its scope) whose read-model row lists
// the subscription id.
func CustomersBySubscription(ctx context.Context, q Querier, subscriptionID string) ([]scope.Key, error) {
	return keys(ctx, q, "customers by subscription", `SELECT livemode, account, customer_id FROM customer_entitlements
		WHERE subscriptions @> jsonb_build_array(jsonb_build_object('id', $1::text))
		ORDER BY customer_id, livemode DESC, account LIMIT 50`, subscriptionID)
}

func keys(ctx context.Context, q Querier, what, sql string, args ...any) ([]scope.Key, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (scope.Key, error) {
		var k scope.Key
		err := row.Scan(&k.Livemode, &k.Account, &k.ID)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
