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

	"github.com/tollgate/tollgate/pkg/eventstore"
)

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
func dlqList(ctx context.Context, db eventstore.Querier, stdout io.Writer) error {
	letters, err := eventstore.ListDeadLetters(ctx, db, "")
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

// errStillFailing is wrapped when dlq redrive left dead letters that still fail.
var errStillFailing = errors.New("dead letters still fail")

// dlqRedrive re-processes dead letters (all, or those of one event id) through admit and the
// projector with the current code and rules, each in its own transaction. An event that now
// applies leaves dead_letters in the same transaction that stores it; one that still fails stays
// with the new reason and one more attempt. It prints one line per dead letter and a summary,
// and returns an error wrapping errStillFailing when some still fail.
func dlqRedrive(ctx context.Context, db eventstore.Querier, p *projector, eventID string, stdout io.Writer) error {
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
		if err := eventstore.StillFailing(ctx, db, d.ID, applyErr.Error()); err != nil {
			return err
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
func redriveOne(ctx context.Context, p *projector, d eventstore.DeadLetter) error {
	a, err := admit(d.Payload)
	if err != nil {
		return err
	}
	_, err = p.apply(ctx, projectionInput{
		Events: []admitted{a},
		InTx: func(ctx context.Context, tx pgx.Tx) error {
			return eventstore.DeleteDeadLetter(ctx, tx, d.ID)
		},
	})
	return asPoison(err)
}
