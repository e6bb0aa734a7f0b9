package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/operate"
)

// grantCmd is processor grant add|list|revoke: the grants of the admin API from the command line.
func grantCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	usage := func() {
		_, _ = fmt.Fprintln(stderr, `Usage:
  processor grant add --user ID --reason TEXT [--feature NAME]... [--limit NAME=N]... [--until RFC3339] [--livemode=false] [--account acct_…] [--by NAME]
  processor grant list --user ID [--livemode=false] [--account acct_…]
  processor grant revoke GRANT_ID [--reason TEXT] [--by NAME]`)
	}
	if len(args) == 0 {
		usage()
		return fmt.Errorf("%w: grant needs add, list or revoke", cli.ErrUsage)
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("grant "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usage
	var (
		user, reason, account, until string
		by                           = "cli"
		livemode                     = true
		features                     cli.ListFlag
		limits                       = cli.LimitsFlag{}
		id                           string
	)
	switch sub {
	case "add":
		fs.StringVar(&user, "user", "", "the app's user `ID`")
		fs.Var(&features, "feature", "a feature `NAME` to give (repeatable)")
		fs.Var(limits, "limit", "a limit to add, `NAME=N` (repeatable)")
		fs.StringVar(&until, "until", "", "when it expires, RFC 3339 (default: until revoked)")
		fs.StringVar(&reason, "reason", "", "why (required; kept for good)")
		fs.StringVar(&by, "by", by, "who gives it (recorded with it)")
	case "list":
		fs.StringVar(&user, "user", "", "the app's user `ID`")
	case "revoke":
		fs.StringVar(&reason, "reason", "", "why")
		fs.StringVar(&by, "by", by, "who revokes it (recorded with it)")
		if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			id, rest = rest[0], rest[1:]
		}
	default:
		usage()
		return fmt.Errorf("%w: unknown grant command %q (add, list or revoke)", cli.ErrUsage, sub)
	}
	if sub != "revoke" {
		fs.BoolVar(&livemode, "livemode", true, "the Stripe mode (scope)")
		fs.StringVar(&account, "account", "", "the connected account `acct_…` (scope; default the platform)")
	}
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%w: grant %s: %w", cli.ErrUsage, sub, err)
	}
	if sub == "revoke" && id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return fmt.Errorf("%w: grant %s: unexpected arguments %q", cli.ErrUsage, sub, strings.Join(fs.Args(), " "))
	}
	sc, err := operate.ParseScope(strconv.FormatBool(livemode), account)
	if err != nil {
		return fmt.Errorf("%w: grant %s: %w", cli.ErrUsage, sub, err)
	}
	switch {
	case sub != "revoke" && user == "":
		return fmt.Errorf("%w: grant %s needs --user ID", cli.ErrUsage, sub)
	case sub == "revoke" && id == "":
		return fmt.Errorf("%w: grant revoke needs the grant's id (grt_…)", cli.ErrUsage)
	}
	var untilAt *time.Time
	if until != "" {
		t, err := time.Parse(time.RFC3339, until)
		if err != nil {
			return fmt.Errorf("%w: grant add: --until %q is not RFC 3339 (2027-01-31T00:00:00Z)", cli.ErrUsage, until)
		}
		untilAt = &t
	}

	deps, err := cli.Open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer deps.Pool.Close()
	switch sub {
	case "add":
		g, err := operate.GiveGrant(ctx, deps.Proj, grant.New{Scope: sc, UserID: user, Features: features, Limits: limits,
			Until: untilAt, Reason: reason, By: by}, time.Now())
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s given to %s (%s): %s\n", g.ID, g.UserID, sc, g.Why())
		return err
	case "list":
		gs, err := operate.ListGrants(ctx, deps.Pool, sc.Of(user))
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		_, _ = fmt.Fprintln(tw, "ID\tUSER\tFEATURES\tLIMITS\tUNTIL\tSTATE\tBY: WHY")
		for _, g := range gs {
			_, _ = fmt.Fprintln(tw, operate.FormatGrant(g))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%d grants of %s (%s)\n", len(gs), user, sc)
		return err
	default:
		g, err := operate.RevokeGrant(ctx, deps.Proj, id, by, reason)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s of %s revoked by %s\n", g.ID, g.UserID, by)
		return err
	}
}
