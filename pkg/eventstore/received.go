package eventstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReceivedAt reads when each of the given stored events was received (stored), by event id, in
// UTC; ids not stored are absent. The admin timeline shows it next to Stripe's created.
func ReceivedAt(ctx context.Context, q Querier, ids []string) (map[string]time.Time, error) {
	rows, err := q.Query(ctx, `SELECT id, received_at FROM stripe_events WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("load received_at of %d events: %w", len(ids), err)
	}
	out := make(map[string]time.Time, len(ids))
	var id string
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&id, &at}, func() error { out[id] = at.UTC(); return nil }); err != nil {
		return nil, fmt.Errorf("load received_at of %d events: %w", len(ids), err)
	}
	return out, nil
}
