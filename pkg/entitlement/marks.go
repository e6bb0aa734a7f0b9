package entitlement

import (
	"context"
	"fmt"
	"time"
)

// Mark records that the processor applied an event (evt_…) or a completed Checkout Session
// (cs_…) of a customer: what ?wait_for= waits for (read your writes).
type Mark struct {
	ID         string
	CustomerID string
}

// RecordMarks stores marks in one round trip, inside the transaction that changed the read
// model; a mark already stored is kept as it is.
func RecordMarks(ctx context.Context, q Querier, marks []Mark) error {
	if len(marks) == 0 {
		return nil
	}
	ids, customers := make([]string, len(marks)), make([]string, len(marks))
	for i, m := range marks {
		ids[i], customers[i] = m.ID, m.CustomerID
	}
	if _, err := q.Exec(ctx, `INSERT INTO applied_marks (id, customer_id)
		SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (id) DO NOTHING`, ids, customers); err != nil {
		return fmt.Errorf("record %d applied marks: %w", len(marks), err)
	}
	return nil
}

// Applied reports whether the mark id (an event or Checkout Session id) was applied for the
// customer (user false) or for one of the user's customers (user true: a customer whose row
// carries the user id).
func Applied(ctx context.Context, q Querier, id string, user bool, key string) (bool, error) {
	sql := `SELECT EXISTS (SELECT 1 FROM applied_marks WHERE id = $1 AND customer_id = $2)`
	if user {
		sql = `SELECT EXISTS (SELECT 1 FROM applied_marks m JOIN customer_entitlements c USING (customer_id)
			WHERE m.id = $1 AND c.user_id = $2)`
	}
	var ok bool
	if err := q.QueryRow(ctx, sql, id, key).Scan(&ok); err != nil {
		return false, fmt.Errorf("read applied mark %s: %w", id, err)
	}
	return ok, nil
}

// PruneMarks deletes marks older than keep.
func PruneMarks(ctx context.Context, q Querier, keep time.Duration) error {
	if _, err := q.Exec(ctx, `DELETE FROM applied_marks WHERE applied_at < now() - $1 * interval '1 millisecond'`, keep.Milliseconds()); err != nil {
		return fmt.Errorf("prune applied marks: %w", err)
	}
	return nil
}
