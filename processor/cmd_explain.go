package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/operate"

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
		return fmt.Errorf("%w: explain: %w", cli.ErrUsage, err)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("%w: explain needs one customer or user id", cli.ErrUsage)
	}
	deps, err := cli.Open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer deps.Pool.Close()
	id := fs.Arg(0)
	var tl operate.Timeline
	if strings.HasPrefix(id, "cus_") {
		tl, err = operate.CustomerTimeline(ctx, deps.Pool, id, deps.Proj.Rules)
	} else {
		tl, err = operate.UserTimeline(ctx, deps.Pool, id, sc, deps.Proj.Rules)
	}
	if errors.Is(err, operate.ErrNoHistory) {
		return fmt.Errorf("explain %s: no stored history (a customer needs events, a user a read-model row)", id)
	}
	if err != nil {
		return err
	}
	return operate.PrintTimeline(stdout, tl)
}
