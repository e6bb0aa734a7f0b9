package eventstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Missing returns the ids among ids that the event store does not hold, in their order in ids
// (a repeated id once). It answers at any age of the events, unlike JetStream's duplicate
// window: the backfill asks it which events of a page of the Stripe API were never received.
func Missing(ctx context.Context, q Querier, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT w.id FROM unnest($1::text[]) WITH ORDINALITY AS w(id, n)
		WHERE NOT EXISTS (SELECT 1 FROM stripe_events e WHERE e.id = w.id)
		ORDER BY w.n`, ids)
	if err != nil {
		return nil, fmt.Errorf("look up %d event ids: %w", len(ids), err)
	}
	all, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look up %d event ids: %w", len(ids), err)
	}
	out := all[:0]
	seen := make(map[string]bool, len(all))
	for _, id := range all {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}
