package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/pkg/scope"
)

// explainCmd is `processor explain [--livemode=true] [--account acct_…] <customer or user id>`:
// the admin timeline as a table. An id starting with cus_ is a customer, anything else a user.
func explainCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sc scope.Scope
	fs.BoolVar(&sc.Livemode, "livemode", true, "the Stripe mode of a user's answer")
	fs.StringVar(&sc.Account, "account", "", "the Connect account of a user's answer (`acct_…`; none: the platform)")
	fs.Usage = func() {
		_, _ = fmt.Fprintln(stderr, "Usage: processor explain [--livemode=false] [--account acct_…] CUSTOMER_OR_USER_ID")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: explain: %w", errUsage, err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("%w: explain needs one customer or user id", errUsage)
	}
	deps, err := openCommand(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer deps.pool.Close()
	id := fs.Arg(0)
	var tl timeline
	if strings.HasPrefix(id, "cus_") {
		tl, err = customerTimeline(ctx, deps.pool, id, deps.proj.rules)
	} else {
		tl, err = userTimeline(ctx, deps.pool, id, sc, deps.proj.rules)
	}
	if errors.Is(err, errNoHistory) {
		return fmt.Errorf("explain %s: no stored history (a customer needs events, a user a read-model row)", id)
	}
	if err != nil {
		return err
	}
	return printTimeline(stdout, tl)
}

// printTimeline writes a timeline as an aligned table, one event a line, the answer after it.
func printTimeline(w io.Writer, tl timeline) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "CREATED\tEVENT\tTYPE\tCUSTOMER\tCHANGED\tPREMIUM\tSTATUS\tFEATURES\tUSER\tWHY")
	for _, e := range tl.Events {
		user := "-"
		if e.After.UserID != nil {
			user = *e.After.UserID
		}
		changed := ""
		if e.Changed {
			changed = "*"
		}
		customer := e.CustomerID
		if customer == "" {
			customer = tl.CustomerID
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\n", e.Created.Format(time.RFC3339), e.ID, e.Type,
			customer, changed, e.After.Premium, e.After.Status, strings.Join(e.After.Features, ","), user, e.Why)
	}
	return tw.Flush()
}
