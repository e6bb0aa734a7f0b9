package entitlement

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/pkg/scope"
)

// Mark records that the processor applied an event (evt_…) or a completed Checkout Session
// (cs_…) of a customer: what ?wait_for= waits for (read your writes).
type Mark struct {
	ID       string
	Customer scope.Key // the customer, in its scope
}

// RecordMarks stores marks in one round trip, inside the transaction that changed the read
// model; a mark already stored is kept as it is.
func RecordMarks(ctx context.Context, q Querier, marks []Mark) error {
	if len(marks) == 0 {
		return nil
	}
	ids, customers := make([]string, len(marks)), make([]scope.Key, len(marks))
	for i, m := range marks {
		ids[i], customers[i] = m.ID, m.Customer
	}
	livemode, account, customerIDs := scope.Columns(customers)
	if _, err := q.Exec(ctx, `INSERT INTO applied_marks (id, livemode, account, customer_id)
		SELECT * FROM unnest($1::text[], $2::boolean[], $3::text[], $4::text[]) ON CONFLICT (id) DO NOTHING`,
		ids, livemode, account, customerIDs); err != nil {
		return fmt.Errorf("record %d applied marks: %w", len(marks), err)
	}
	return nil
}

// Applied reports whether the mark id (an event or Checkout Session id) was applied for the
// customer k (user false) or for one of the user k's customers (user true: a customer of k's
// scope whose row carries the user id).
func Applied(ctx context.Context, q Querier, id string, user bool, k scope.Key) (bool, error) {
	sql := `SELECT EXISTS (SELECT 1 FROM applied_marks WHERE id = $1 AND livemode = $2 AND account = $3 AND customer_id = $4)`
	if user {
		sql = `SELECT EXISTS (SELECT 1 FROM applied_marks m JOIN customer_entitlements c USING (livemode, account, customer_id)
			WHERE m.id = $1 AND m.livemode = $2 AND m.account = $3 AND c.user_id = $4)`
	}
	var ok bool
	if err := q.QueryRow(ctx, sql, id, k.Livemode, k.Account, k.ID).Scan(&ok); err != nil {
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
