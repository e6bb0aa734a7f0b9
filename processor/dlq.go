package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// execer runs statements: a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// querier runs queries: a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// deadLetter is one row of dead_letters: a message the processor gave up on, kept whole.
type deadLetter struct {
	ID        int64
	EventID   string // "" when the payload has no readable id
	Subject   string
	StreamSeq uint64
	Payload   []byte
	Reason    string
	Attempts  int
	FailedAt  time.Time
}

// recordDeadLetter stores a message in dead_letters. The stream sequence is unique: recording
// the same message again (a redelivery after the row was written but before the Term reached
// the server) updates the row instead of adding one.
//
// The text columns are made storable first (valid UTF-8, no NUL): a reason quoting the payload
// or an id with a NUL must not make the dead letter itself fail, or the message would be retried
// forever instead of set aside.
func recordDeadLetter(ctx context.Context, db execer, d deadLetter) error {
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

// listDeadLetters reads dead letters in id order: all of them, or those of one event id.
func listDeadLetters(ctx context.Context, db querier, eventID string) ([]deadLetter, error) {
	rows, err := db.Query(ctx, `SELECT id, coalesce(event_id, ''), subject, stream_seq, payload, reason, attempts, failed_at
		FROM dead_letters WHERE $1 = '' OR event_id = $1 ORDER BY id`, eventID)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (deadLetter, error) {
		var d deadLetter
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

// rowQuerier runs a query of one row: a pool or a transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// countDeadLetters is the number of rows in dead_letters.
func countDeadLetters(ctx context.Context, db rowQuerier) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM dead_letters`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count dead letters: %w", err)
	}
	return n, nil
}

// eventIDOf reads the top-level "id" of a payload that may not be a valid Stripe event, for the
// dead letter's event_id; "" when there is none.
func eventIDOf(raw []byte) string {
	var head struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(raw, &head) != nil {
		return ""
	}
	if s, ok := head.ID.(string); ok {
		return s
	}
	return ""
}

// dlqList prints the dead letters as a table.
func dlqList(ctx context.Context, db querier, stdout io.Writer) error {
	letters, err := listDeadLetters(ctx, db, "")
	if err != nil {
		return err
	}
	if len(letters) == 0 {
		_, err := fmt.Fprintln(stdout, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	out := &printer{w: tw}
	out.printf("ID\tEVENT ID\tREASON\tATTEMPTS\tFAILED AT\n")
	for _, d := range letters {
		id := d.EventID
		if id == "" {
			id = "-"
		}
		out.printf("%d\t%s\t%s\t%d\t%s\n", d.ID, id, oneLine(d.Reason, 100), d.Attempts, d.FailedAt.Format(time.RFC3339))
	}
	return errors.Join(out.err, tw.Flush())
}

// printer writes formatted lines and keeps the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// oneLine makes s fit one table cell of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// redriveDB is what redrive needs of Postgres besides the projector: read dead letters and
// update the reason of those that still fail.
type redriveDB interface {
	querier
	execer
}

// errStillFailing is wrapped when dlq redrive left dead letters that still fail.
var errStillFailing = errors.New("dead letters still fail")

// dlqRedrive re-processes dead letters (all, or those of one event id) through admit and the
// projector with the current code and rules, each in its own transaction. An event that now
// applies leaves dead_letters in the same transaction that stores it; one that still fails stays
// with the new reason and one more attempt. It prints one line per dead letter and a summary,
// and returns an error wrapping errStillFailing when some still fail.
func dlqRedrive(ctx context.Context, db redriveDB, p *projector, eventID string, stdout io.Writer) error {
	letters, err := listDeadLetters(ctx, db, eventID)
	if err != nil {
		return err
	}
	if len(letters) == 0 {
		if eventID != "" {
			return fmt.Errorf("no dead letter for event %s (see processor dlq list)", eventID)
		}
		_, err := fmt.Fprintln(stdout, "no dead letters")
		return err
	}
	var ok, failed int
	out := &printer{w: stdout}
	for _, d := range letters {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("redrive interrupted after %d of %d dead letters: %w", ok+failed, len(letters), err)
		}
		name := d.EventID
		if name == "" {
			name = fmt.Sprintf("dead letter %d", d.ID)
		}
		applyErr := redriveOne(ctx, p, d)
		if applyErr == nil {
			ok++
			out.printf("applied  %s\n", name)
			continue
		}
		var poison *poisonError
		if !errors.As(applyErr, &poison) && !isContentError(applyErr) {
			// Postgres is not answering or the like: the dead letter is as it was; stop here.
			return fmt.Errorf("redrive %s: %w (%d applied so far; nothing lost, run it again)", name, applyErr, ok)
		}
		failed++
		if _, err := db.Exec(ctx, `UPDATE dead_letters SET reason = $2, attempts = attempts + 1, failed_at = now() WHERE id = $1`,
			d.ID, storable(applyErr.Error())); err != nil {
			return fmt.Errorf("update dead letter %d: %w", d.ID, err)
		}
		out.printf("failed   %s: %s\n", name, oneLine(applyErr.Error(), 200))
	}
	out.printf("redrive: %d applied, %d still failing, of %d dead letters\n", ok, failed, len(letters))
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d (see processor dlq list)", errStillFailing, failed, len(letters))
	}
	return out.err
}

// redriveOne applies one dead letter and removes it from dead_letters in the same transaction.
func redriveOne(ctx context.Context, p *projector, d deadLetter) error {
	a, err := admit(d.Payload)
	if err != nil {
		return err
	}
	_, err = p.apply(ctx, projectionInput{
		Events: []admitted{a},
		InTx: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM dead_letters WHERE id = $1`, d.ID)
			return err
		},
	})
	return asPoison(err)
}
