package entitlement

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// Ladder is a customer's stored checkpoints (table customer_checkpoints, migrations 000009 and
// 000010: the newest and older rungs, see subscription.Ladder) as a derivation reads them.
type Ladder struct {
	// Rungs is where each checkpoint of the fold version sits, in Created order.
	Rungs []subscription.Rung
	// From is the newest checkpoint with Created before the bound LoadLadders was given,
	// decoded: the derivation resumes from it. Nil when there is none or it no longer decodes.
	From *subscription.Checkpoint
}

// Newest reports whether From is the customer's newest checkpoint (not an older rung).
func (l Ladder) Newest() bool {
	return l.From != nil && len(l.Rungs) > 0 && l.Rungs[len(l.Rungs)-1].Created == l.From.Created
}

// LoadLadders reads, in one statement, the checkpoints of the given fold version of each
// customer (in its scope): where each sits, and the state of the newest one with
// checkpoint_created < before[i] (math.MaxInt64: the newest of all). Customers without any are
// absent from the map. Called under the customers' locks, it sees the checkpoints the last
// transaction holding them committed.
func LoadLadders(ctx context.Context, q Querier, customers []scope.Key, before []int64, version int) (map[scope.Key]Ladder, error) {
	if len(customers) == 0 {
		return nil, nil
	}
	if len(before) != len(customers) {
		return nil, fmt.Errorf("load checkpoints: %d bounds for %d customers", len(before), len(customers))
	}
	livemode, account, ids := scope.Columns(customers)
	// The window picks the newest checkpoint before each customer's bound; only its state is
	// sent, the other rows are two numbers each.
	rows, err := q.Query(ctx, `SELECT c.livemode, c.account, c.customer_id, c.checkpoint_created, c.events,
			CASE WHEN c.checkpoint_created = max(c.checkpoint_created) FILTER (WHERE c.checkpoint_created < u.b) OVER w
			THEN c.state END
		FROM unnest($1::boolean[], $2::text[], $3::text[], $4::bigint[]) AS u(l, a, id, b)
		JOIN customer_checkpoints c ON c.livemode = u.l AND c.account = u.a AND c.customer_id = u.id
		WHERE c.version = $5
		WINDOW w AS (PARTITION BY c.livemode, c.account, c.customer_id)
		ORDER BY c.livemode, c.account, c.customer_id, c.checkpoint_created`, livemode, account, ids, before, version)
	if err != nil {
		return nil, fmt.Errorf("load checkpoints: %w", err)
	}
	out := make(map[scope.Key]Ladder, len(customers))
	var k scope.Key
	var r subscription.Rung
	var state []byte
	_, err = pgx.ForEachRow(rows, []any{&k.Livemode, &k.Account, &k.ID, &r.Created, &r.Events, &state}, func() error {
		l := out[k]
		l.Rungs = append(l.Rungs, r)
		var cp subscription.Checkpoint
		if state != nil && decode(state, &cp) == nil && cp.Version == version && cp.Created == r.Created {
			l.From = &cp
		}
		out[k] = l
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load checkpoints: %w", err)
	}
	return out, nil
}

// LadderUpdate is what one derivation changes of a customer's checkpoints.
type LadderUpdate struct {
	Customer scope.Key
	// After: every checkpoint of the customer with checkpoint_created > After is deleted, of any
	// version (they no longer hold every event up to their T, or are replaced by Save);
	// math.MinInt64 deletes them all.
	After int64
	// Drop are older rungs the ladder thinned out, by checkpoint_created.
	Drop []int64
	// Save are inserted, each replacing a row at the same checkpoint_created.
	Save []subscription.Checkpoint
}

// SaveLadders applies the updates in two statements (one delete, one insert), to be run in the
// transaction that derived them, under the customers' locks.
func SaveLadders(ctx context.Context, q Querier, updates []LadderUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	// The deletes as ranges lo < checkpoint_created <= hi: (After, max] and each (d-1, d].
	var delKeys []scope.Key
	var lo, hi []int64
	var insKeys []scope.Key
	var created, events []int64
	var versions []int32
	var states [][]byte
	for _, u := range updates {
		delKeys, lo, hi = append(delKeys, u.Customer), append(lo, u.After), append(hi, math.MaxInt64)
		for _, d := range u.Drop {
			delKeys, lo, hi = append(delKeys, u.Customer), append(lo, d-1), append(hi, d)
		}
		for _, cp := range u.Save {
			b, err := json.Marshal(cp)
			if err != nil {
				return fmt.Errorf("encode checkpoint of customer %s: %w", u.Customer.ID, err)
			}
			insKeys, created, events = append(insKeys, u.Customer), append(created, cp.Created), append(events, cp.Events)
			versions, states = append(versions, int32(cp.Version)), append(states, b) //nolint:gosec // a small constant
		}
	}
	livemode, account, ids := scope.Columns(delKeys)
	if _, err := q.Exec(ctx, `DELETE FROM customer_checkpoints c
		USING unnest($1::boolean[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS u(l, a, id, lo, hi)
		WHERE c.livemode = u.l AND c.account = u.a AND c.customer_id = u.id
		AND c.checkpoint_created > u.lo AND c.checkpoint_created <= u.hi`,
		livemode, account, ids, lo, hi); err != nil {
		return fmt.Errorf("delete checkpoints of %d customers: %w", len(updates), err)
	}
	if len(insKeys) == 0 {
		return nil
	}
	livemode, account, ids = scope.Columns(insKeys)
	if _, err := q.Exec(ctx, `INSERT INTO customer_checkpoints (livemode, account, customer_id, checkpoint_created, events, version, state)
		SELECT l, a, c, t, n, v, s FROM unnest($1::boolean[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::integer[], $7::bytea[]) AS u(l, a, c, t, n, v, s)
		ON CONFLICT (livemode, account, customer_id, checkpoint_created) DO UPDATE SET events = excluded.events,
			version = excluded.version, state = excluded.state, updated_at = now()`,
		livemode, account, ids, created, events, versions, states); err != nil {
		return fmt.Errorf("save %d checkpoints: %w", len(insKeys), err)
	}
	return nil
}
