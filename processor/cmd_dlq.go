package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/operate"
	"github.com/tollgate/tollgate/processor/internal/pgpool"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/eventstore"
)

func dlqCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: dlq needs a subcommand: list or redrive [EVENT_ID]", cli.ErrUsage)
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "list":
		if len(rest) > 0 {
			return fmt.Errorf("%w: dlq list takes no arguments, got %q", cli.ErrUsage, strings.Join(rest, " "))
		}
		url, err := config.LoadDatabase(getenv)
		if err != nil {
			return err
		}
		pool, err := pgpool.OpenCommand(ctx, url)
		if err != nil {
			return err
		}
		defer pool.Close()
		return dlqList(ctx, pool, stdout)
	case "redrive":
		if len(rest) > 1 {
			return fmt.Errorf("%w: dlq redrive takes at most one EVENT_ID, got %q", cli.ErrUsage, strings.Join(rest, " "))
		}
		eventID := ""
		if len(rest) == 1 {
			eventID = rest[0]
		}
		deps, err := cli.Open(ctx, getenv, stderr)
		if err != nil {
			return err
		}
		defer deps.Pool.Close()
		return operate.Redrive(ctx, deps.Pool, deps.Proj, eventID, stdout)
	default:
		return fmt.Errorf("%w: unknown dlq subcommand %q: want list or redrive [EVENT_ID]", cli.ErrUsage, sub)
	}
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
	out := &operate.Printer{W: tw}
	out.Printf("ID\tEVENT ID\tREASON\tATTEMPTS\tFAILED AT\n")
	for _, d := range letters {
		id := d.EventID
		if id == "" {
			id = "-"
		}
		out.Printf("%d\t%s\t%s\t%d\t%s\n", d.ID, id, operate.OneLine(d.Reason, 100), d.Attempts, d.FailedAt.Format(time.RFC3339))
	}
	return errors.Join(out.Err, tw.Flush())
}
