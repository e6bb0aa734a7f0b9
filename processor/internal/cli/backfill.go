package cli

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/processor/internal/backfill"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"
)

// BackfillOptions are the flags of `processor backfill`.
type BackfillOptions struct {
	Since       time.Duration
	Undelivered bool
	Types       []string
	Rate        float64
	Restart     bool
	Account     string // the connected account to list events of (Stripe-Account); "" for the platform
}

const backfillUsage = `Usage: processor backfill [--since 72h] [--undelivered] [--types t1,t2] [--account acct_…] [--rate 25] [--restart]

Lists the events of the last --since from the Stripe API (GET /v1/events), asks the event store
which of them it does not hold (at any age), and publishes those to JetStream exactly as the
listener's webhook does (Nats-Msg-Id = event id); the processor applies them like any other.
Needs STRIPE_API_KEY (a restricted key with read access to events is enough), DATABASE_URL and
NATS_URL; STRIPE_API_BASE points it at another API (stripe-mock, a fake). An interrupted run keeps
a checkpoint in Postgres; the same command again resumes it. Exit status 0: done; 1: error.

`

// ParseBackfill reads and checks the flags of `processor backfill`.
func ParseBackfill(args []string, stderr io.Writer) (BackfillOptions, error) {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := BackfillOptions{Since: backfill.DefaultSince}
	fs.Var((*SinceFlag)(&o.Since), "since", "list events created in this last `duration` (such as 72h, 90m or 7d; at most 30d)")
	fs.BoolVar(&o.Undelivered, "undelivered", false, "list only events whose webhooks are pending or failed (delivery_success=false)")
	fs.Func("types", "list only these comma-separated event `types` (at most 20)", func(v string) error {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				o.Types = append(o.Types, t)
			}
		}
		return nil
	})
	fs.Float64Var(&o.Rate, "rate", stripeapi.DefaultRate, "at most this many Stripe API `requests` per second")
	fs.StringVar(&o.Account, "account", "", "list the events of this connected `account` (acct_…, sent as the Stripe-Account header); default the platform's own")
	fs.BoolVar(&o.Restart, "restart", false, "ignore the checkpoint of an interrupted run with the same flags and start over")
	fs.Usage = func() {
		_, _ = io.WriteString(stderr, backfillUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("backfill: %w", err) // flag.ErrHelp for -h: the caller exits 0
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("backfill takes no positional arguments, got %q", strings.Join(fs.Args(), " "))
	case o.Since <= 0:
		return o, fmt.Errorf("backfill: --since %s must be positive", backfill.ShortDuration(o.Since))
	case o.Since > backfill.MaxSince:
		return o, fmt.Errorf("backfill: --since %s reaches further back than Stripe keeps events (30 days, 720h); use at most --since 30d", backfill.ShortDuration(o.Since))
	case len(o.Types) > config.MaxBackfillTypes:
		return o, fmt.Errorf("backfill: --types lists %d event types; Stripe filters on at most %d", len(o.Types), config.MaxBackfillTypes)
	case o.Account != "" && !scope.ValidAccount(o.Account):
		return o, fmt.Errorf("backfill: --account %q is not a connected account id (acct_ followed by letters and digits)", o.Account)
	case o.Rate <= 0 || o.Rate > 100:
		return o, fmt.Errorf("backfill: --rate %g must be above 0 and at most 100 (Stripe's live-mode read limit)", o.Rate)
	}
	return o, nil
}

// SinceFlag is a duration flag that also takes whole days ("7d").
type SinceFlag time.Duration

// String is the duration in the shortest form.
func (f *SinceFlag) String() string { return backfill.ShortDuration(time.Duration(*f)) }

// Set reads a duration such as 72h or whole days such as 7d.
func (f *SinceFlag) Set(v string) error {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 72h or 7d", v)
		}
		*f = SinceFlag(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 72h or 7d", v)
	}
	*f = SinceFlag(d)
	return nil
}

// Filters describes the filters of o for the summary line: "" or ", undelivered only, types …".
func Filters(o BackfillOptions) string {
	var f []string
	if o.Undelivered {
		f = append(f, "undelivered only")
	}
	if len(o.Types) > 0 {
		f = append(f, "types "+strings.Join(o.Types, ","))
	}
	if len(f) == 0 {
		return ""
	}
	return ", " + strings.Join(f, ", ")
}
