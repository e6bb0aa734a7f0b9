package eventstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Execer runs statements: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// DeadLetter is one row of dead_letters: a message the processor gave up on, kept whole.
type DeadLetter struct {
	ID        int64  // set by the store
	EventID   string // "" when the payload has no readable id
	Subject   string
	StreamSeq uint64
	Payload   []byte
	Reason    string
	Attempts  int
	FailedAt  time.Time // set by the store, UTC
}

// RecordDeadLetter stores a message in dead_letters. The stream sequence is unique: recording
// the same message again (a redelivery after the row was written but before the Term reached
// the server) updates the row instead of adding one.
//
// The text columns are made storable first (valid UTF-8, no NUL, an event id of at most 255
// bytes): a reason quoting the payload or an id with a NUL must not make the dead letter itself
// fail, or the message would be retried forever instead of set aside.
func RecordDeadLetter(ctx context.Context, db Execer, d DeadLetter) error {
	var eventID *string
	if id := storable(truncate(d.EventID, 255)); id != "" { // Stripe ids are far shorter; a huge one must not break the index
		eventID = &id
	}
	_, err := db.Exec(ctx, `INSERT INTO dead_letters (event_id, subject, stream_seq, payload, reason, attempts)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (stream_seq) DO UPDATE SET event_id = excluded.event_id, subject = excluded.subject,
			payload = excluded.payload, reason = excluded.reason, attempts = excluded.attempts, failed_at = now()`,
		eventID, storable(d.Subject), int64(d.StreamSeq), d.Payload, storable(d.Reason), d.Attempts) //nolint:gosec // stream sequences fit in int64
	if err != nil {
		return fmt.Errorf("record dead letter (stream seq %d): %w", d.StreamSeq, err)
	}
	return nil
}

// ListDeadLetters reads dead letters in id order: all of them (eventID ""), or those of one
// event id.
func ListDeadLetters(ctx context.Context, q Querier, eventID string) ([]DeadLetter, error) {
	rows, err := q.Query(ctx, `SELECT id, coalesce(event_id, ''), subject, stream_seq, payload, reason, attempts, failed_at
		FROM dead_letters WHERE $1 = '' OR event_id = $1 ORDER BY id`, eventID)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		var seq int64
		err := row.Scan(&d.ID, &d.EventID, &d.Subject, &seq, &d.Payload, &d.Reason, &d.Attempts, &d.FailedAt)
		d.StreamSeq = uint64(seq) //nolint:gosec // stored from a uint64
		d.FailedAt = d.FailedAt.UTC()
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// CountDeadLetters is the number of rows in dead_letters.
func CountDeadLetters(ctx context.Context, q Querier) (int64, error) {
	rows, err := q.Query(ctx, `SELECT count(*) FROM dead_letters`)
	if err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}

// StillFailing records that dead letter id failed again: its reason becomes reason (made
// storable), one more attempt, failed now.
func StillFailing(ctx context.Context, db Execer, id int64, reason string) error {
	if _, err := db.Exec(ctx, `UPDATE dead_letters SET reason = $2, attempts = attempts + 1, failed_at = now() WHERE id = $1`,
		id, storable(reason)); err != nil {
		return fmt.Errorf("update dead letter %d: %w", id, err)
	}
	return nil
}

// DeleteDeadLetter removes dead letter id; redrive calls it in the transaction that applies the
// event, so the event leaves dead_letters exactly when it is stored.
func DeleteDeadLetter(ctx context.Context, db Execer, id int64) error {
	if _, err := db.Exec(ctx, `DELETE FROM dead_letters WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete dead letter %d: %w", id, err)
	}
	return nil
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// storable makes s storable in a Postgres text column: valid UTF-8 without NUL.
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
