// Package operate holds the operator's use cases: replay, redrive, enqueue a repair, timelines
// and the pipeline status. The CLI, the admin JSON API and the console all call them, so each
// is written once.
package operate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/eventstore"
)

// OneLine makes s fit one table cell of at most n runes.
func OneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// ErrStillFailing is wrapped when dlq redrive left dead letters that still fail.
var ErrStillFailing = errors.New("dead letters still fail")

// Redrive re-processes dead letters (all, or those of one event id) through admit and the
// projector with the current code and rules, each in its own transaction. An event that now
// applies leaves dead_letters in the same transaction that stores it; one that still fails stays
// with the new reason and one more attempt. It prints one line per dead letter and a summary,
// and returns an error wrapping ErrStillFailing when some still fail.
func Redrive(ctx context.Context, db eventstore.Querier, p *projection.Projector, eventID string, stdout io.Writer) error {
	letters, err := eventstore.ListDeadLetters(ctx, db, eventID)
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
	out := &Printer{W: stdout}
	for _, d := range letters {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("redrive interrupted after %d of %d dead letters: %w", ok+failed, len(letters), err)
		}
		name := d.EventID
		if name == "" {
			name = fmt.Sprintf("dead letter %d", d.ID)
		}
		err := RedriveLetter(ctx, db, p, d)
		var still *StillFailingError
		switch {
		case err == nil:
			ok++
			out.Printf("applied  %s\n", name)
			continue
		case !errors.As(err, &still):
			// Postgres is not answering or the like: the dead letter is as it was; stop here.
			return fmt.Errorf("redrive %s: %w (%d applied so far; nothing lost, run it again)", name, err, ok)
		}
		failed++
		out.Printf("failed   %s: %s\n", name, OneLine(still.Err.Error(), 200))
	}
	out.Printf("redrive: %d applied, %d still failing, of %d dead letters\n", ok, failed, len(letters))
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d (see processor dlq list)", ErrStillFailing, failed, len(letters))
	}
	return out.Err
}

// StillFailingError is a dead letter that failed again for its own content: it stays in
// dead_letters with this reason and one more attempt.
type StillFailingError struct {
	ID  int64
	Err error
}

func (e *StillFailingError) Error() string { return e.Err.Error() }
func (e *StillFailingError) Unwrap() error { return e.Err }

// RedriveLetter applies one dead letter through admit and the projector with the current code
// and rules, and removes it from dead_letters in the same transaction. When it fails again for
// its own content (poison, or a value Postgres refuses), the failure is recorded on the dead
// letter and returned as a *StillFailingError; any other error (an outage) leaves the dead
// letter as it was. The CLI, the admin API and the console all redrive through it.
func RedriveLetter(ctx context.Context, db eventstore.Querier, p *projection.Projector, d eventstore.DeadLetter) error {
	err := redriveOne(ctx, p, d)
	if err == nil {
		return nil
	}
	var poison *projection.PoisonError
	if !errors.As(err, &poison) && !projection.IsContentError(err) {
		return err
	}
	if serr := eventstore.StillFailing(ctx, db, d.ID, err.Error()); serr != nil {
		return serr
	}
	return &StillFailingError{ID: d.ID, Err: err}
}

// ErrNoDeadLetter means the dead letter asked for is not (or no longer) in dead_letters.
var ErrNoDeadLetter = errors.New("no such dead letter")

// RedriveID redrives the dead letter with row id id (RedriveLetter) and returns it.
func RedriveID(ctx context.Context, db eventstore.Querier, p *projection.Projector, id int64) (eventstore.DeadLetter, error) {
	letters, err := eventstore.ListDeadLetters(ctx, db, "")
	if err != nil {
		return eventstore.DeadLetter{}, err
	}
	for _, d := range letters {
		if d.ID == id {
			return d, RedriveLetter(ctx, db, p, d)
		}
	}
	return eventstore.DeadLetter{}, fmt.Errorf("dead letter %d: %w", id, ErrNoDeadLetter)
}

// redriveOne applies one dead letter and removes it from dead_letters in the same transaction.
func redriveOne(ctx context.Context, p *projection.Projector, d eventstore.DeadLetter) error {
	a, err := projection.Admit(d.Payload)
	if err != nil {
		return err
	}
	_, err = p.Apply(ctx, projection.Input{
		Events: []projection.Admitted{a},
		InTx: func(ctx context.Context, tx pgx.Tx) error {
			return eventstore.DeleteDeadLetter(ctx, tx, d.ID)
		},
	})
	return projection.AsPoison(err)
}

// Printer writes formatted lines and keeps the first write error.
type Printer struct {
	W   io.Writer
	Err error
}

// Printf writes one formatted line unless an earlier write failed.
func (p *Printer) Printf(format string, args ...any) {
	if p.Err == nil {
		_, p.Err = fmt.Fprintf(p.W, format, args...)
	}
}
