// Package audit is every statement on admin_audit: the log of each change made through the
// admin API, the console or the command line, kept for good with the name of the admin token
// that made it.
package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Where a change was made (Entry.Via).
const (
	ViaAPI     = "api"
	ViaConsole = "console"
	ViaCLI     = "cli"
)

// OutcomeOK is Entry.Outcome of a change that succeeded; any other outcome says why it failed.
const OutcomeOK = "ok"

// Querier is what the statements need (a pool, a connection or a transaction).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Entry is one change: who (Actor, the token's name), what (Action, such as "grant.add", and
// Target, such as a grant or event id), when (At), through what (Via, from where: Remote) and
// the outcome (OutcomeOK or the error's text). Never a token.
type Entry struct {
	ID      int64
	At      time.Time
	Actor   string
	Via     string
	Action  string
	Target  string
	Outcome string
	Remote  string
}

// maxField bounds each text field, so a hostile target or error cannot bloat the log.
const maxField = 500

func clip(s string) string {
	if len(s) > maxField {
		return s[:maxField]
	}
	return s
}

// Record appends e (its ID and At are set by the database). Record it in the change's own
// transaction where there is one, so that a change is never without its entry.
func Record(ctx context.Context, q Querier, e Entry) error {
	_, err := q.Exec(ctx, `INSERT INTO admin_audit (actor, via, action, target, outcome, remote) VALUES ($1, $2, $3, $4, $5, $6)`,
		clip(e.Actor), clip(e.Via), clip(e.Action), clip(e.Target), clip(e.Outcome), clip(e.Remote))
	if err != nil {
		return fmt.Errorf("record audit entry %s %s: %w", e.Action, e.Target, err)
	}
	return nil
}

// List returns up to limit entries, newest first, older than the entry before (0: from the
// newest): pages of the console's audit page.
func List(ctx context.Context, q Querier, limit int, before int64) ([]Entry, error) {
	rows, err := q.Query(ctx, `SELECT id, at, actor, via, action, target, outcome, remote FROM admin_audit
		WHERE $2::bigint = 0 OR id < $2 ORDER BY id DESC LIMIT $1`, limit, before)
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := row.Scan(&e.ID, &e.At, &e.Actor, &e.Via, &e.Action, &e.Target, &e.Outcome, &e.Remote)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	return out, nil
}
