package entitlement

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// Checkpoint is a customer's stored fold state (table customer_checkpoints, migration 000009):
// the derivation of every event of its history with created <= State.Created.
type Checkpoint struct {
	Customer scope.Key
	State    subscription.Checkpoint
}

// LoadCheckpoints reads the stored checkpoints of the given customers, each in its scope, of
// the given fold version; others (missing, another version, or a state that no longer decodes)
// are absent from the map, so the caller derives those customers from scratch. Called under the
// customers' locks, it sees the checkpoint the last transaction holding them committed.
func LoadCheckpoints(ctx context.Context, q Querier, customers []scope.Key, version int) (map[scope.Key]subscription.Checkpoint, error) {
	if len(customers) == 0 {
		return nil, nil
	}
	livemode, account, ids := scope.Columns(customers)
	rows, err := q.Query(ctx, `SELECT livemode, account, customer_id, state FROM customer_checkpoints
		WHERE (livemode, account, customer_id) IN (SELECT * FROM unnest($1::boolean[], $2::text[], $3::text[]))
		AND version = $4`, livemode, account, ids, version)
	if err != nil {
		return nil, fmt.Errorf("load checkpoints: %w", err)
	}
	out := make(map[scope.Key]subscription.Checkpoint, len(customers))
	var k scope.Key
	var state []byte
	_, err = pgx.ForEachRow(rows, []any{&k.Livemode, &k.Account, &k.ID, &state}, func() error {
		var cp subscription.Checkpoint
		if json.Unmarshal(state, &cp) == nil && cp.Version == version {
			out[k] = cp
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load checkpoints: %w", err)
	}
	return out, nil
}

// SaveCheckpoints upserts checkpoints in one round trip, replacing whatever was stored.
func SaveCheckpoints(ctx context.Context, q Querier, cps []Checkpoint) error {
	if len(cps) == 0 {
		return nil
	}
	keys := make([]scope.Key, len(cps))
	created := make([]int64, len(cps))
	versions := make([]int32, len(cps))
	states := make([]string, len(cps))
	for i, c := range cps {
		b, err := json.Marshal(c.State)
		if err != nil {
			return fmt.Errorf("encode checkpoint of customer %s: %w", c.Customer.ID, err)
		}
		keys[i], created[i], versions[i], states[i] = c.Customer, c.State.Created, int32(c.State.Version), string(b) //nolint:gosec // a small constant
	}
	livemode, account, ids := scope.Columns(keys)
	if _, err := q.Exec(ctx, `INSERT INTO customer_checkpoints (livemode, account, customer_id, checkpoint_created, version, state)
		SELECT l, a, c, t, v, s::jsonb FROM unnest($1::boolean[], $2::text[], $3::text[], $4::bigint[], $5::integer[], $6::text[]) AS u(l, a, c, t, v, s)
		ON CONFLICT (livemode, account, customer_id) DO UPDATE SET checkpoint_created = excluded.checkpoint_created,
			version = excluded.version, state = excluded.state, updated_at = now()`,
		livemode, account, ids, created, versions, states); err != nil {
		return fmt.Errorf("save %d checkpoints: %w", len(cps), err)
	}
	return nil
}
