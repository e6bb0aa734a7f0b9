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

// oneLine makes s fit one table cell of at most n runes.
func OneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// errStillFailing is wrapped when dlq redrive left dead letters that still fail.
var ErrStillFailing = errors.New("dead letters still fail")

// dlqRedrive re-processes dead letters (all, or those of one event id) through admit and the
// projector with the current code and rules, each in its own transaction. An event that now
// applies leaves dead_letters in the same transaction that stores it; one that still fails stays
// with the new reason and one more attempt. It prints one line per dead letter and a summary,
// and returns an error wrapping errStillFailing when some still fail.
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
		applyErr := RedriveOne(ctx, p, d)
		if applyErr == nil {
			ok++
			out.Printf("applied  %s\n", name)
			continue
		}
		var poison *projection.PoisonError
		if !errors.As(applyErr, &poison) && !projection.IsContentError(applyErr) {
			// Postgres is not answering or the like: the dead letter is as it was; stop here.
			return fmt.Errorf("redrive %s: %w (%d applied so far; nothing lost, run it again)", name, applyErr, ok)
		}
		failed++
		if err := eventstore.StillFailing(ctx, db, d.ID, applyErr.Error()); err != nil {
			return err
		}
		out.Printf("failed   %s: %s\n", name, OneLine(applyErr.Error(), 200))
	}
	out.Printf("redrive: %d applied, %d still failing, of %d dead letters\n", ok, failed, len(letters))
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d (see processor dlq list)", ErrStillFailing, failed, len(letters))
	}
	return out.Err
}

// redriveOne applies one dead letter and removes it from dead_letters in the same transaction.
func RedriveOne(ctx context.Context, p *projection.Projector, d eventstore.DeadLetter) error {
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

func (p *Printer) Printf(format string, args ...any) {
	if p.Err == nil {
		_, p.Err = fmt.Fprintf(p.W, format, args...)
	}
}
