// Package failopen holds every statement on the switches table's fail_open row (migrations/000002):
// the operator switch that, while on, makes every query API answer grant access. The query API
// follows it; the processor's console reads and flips it.
package failopen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// name is the row of the switches table this switch lives in.
const name = "fail_open"

// ErrNoSwitch means the switches table has no fail_open row (migrations not applied).
var ErrNoSwitch = errors.New("the switches table has no fail_open row: apply the migrations (processor migrate)")

// Querier is a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Status is the switch as stored.
type Status struct {
	On    bool
	Since time.Time // when it last changed, UTC
}

// Read reads the switch; ErrNoSwitch when its row is missing.
func Read(ctx context.Context, q Querier) (Status, error) {
	var st Status
	err := q.QueryRow(ctx, `SELECT enabled, updated_at FROM switches WHERE name = $1`, name).Scan(&st.On, &st.Since)
	if errors.Is(err, pgx.ErrNoRows) {
		return Status{}, ErrNoSwitch
	}
	if err != nil {
		return Status{}, fmt.Errorf("read the fail-open switch: %w", err)
	}
	st.Since = st.Since.UTC()
	return st, nil
}

// Set flips the switch. Since moves only when the state changes, so turning on a switch that is
// already on keeps the time it went on. UPDATE only: the operator's role needs no INSERT. The
// table's trigger notifies the query API instances, which follow within about 2 s.
func Set(ctx context.Context, q Querier, on bool) (Status, error) {
	var st Status
	err := q.QueryRow(ctx, `UPDATE switches SET enabled = $2,
			updated_at = CASE WHEN enabled = $2 THEN updated_at ELSE now() END
		WHERE name = $1 RETURNING enabled, updated_at`, name, on).Scan(&st.On, &st.Since)
	if errors.Is(err, pgx.ErrNoRows) {
		return Status{}, ErrNoSwitch
	}
	if err != nil {
		return Status{}, fmt.Errorf("set the fail-open switch: %w", err)
	}
	st.Since = st.Since.UTC()
	return st, nil
}
