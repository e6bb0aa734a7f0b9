package operate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tollgate/tollgate/processor/internal/projection"

	"github.com/tollgate/tollgate/pkg/backoff"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/scope"
)

// ReplayOptions choose what replay re-derives.
type ReplayOptions struct {
	Customer string // one customer (in every scope it has events of), or
	All      bool   // every customer with stored events, scope by scope, in id order
	// PageSize is the number of customers re-derived per transaction with All.
	PageSize int
	// ProgressEvery is the least time between two progress lines.
	ProgressEvery time.Duration
}

// Replay re-derives read models from the stored histories with the projector's (current) rules,
// through the same transaction as the consumer: same locks, same order. It is therefore safe
// while serve runs, and idempotent: a second replay with the same rules changes nothing. It
// prints progress lines to stderr and, at the end, a summary with the number of customer
// entitlements that changed to stdout. Transient failures of a page are retried a few times;
// an interrupted replay reports how far it got (running it again is always safe).
func Replay(ctx context.Context, db eventstore.Querier, p *projection.Projector, o ReplayOptions, stdout, stderr io.Writer) error {
	start := time.Now()
	if o.Customer != "" {
		keys, err := eventstore.CustomerScopes(ctx, db, o.Customer)
		if err != nil {
			return fmt.Errorf("replay customer %s: %w", o.Customer, err)
		}
		if len(keys) == 0 {
			return fmt.Errorf("replay: customer %s has no stored events", o.Customer)
		}
		res, err := applyRetrying(ctx, p, projection.Input{Customers: keys, RefreshAllUsers: true, FromScratch: true}, stderr)
		if err != nil {
			return fmt.Errorf("replay customer %s: %w", o.Customer, err)
		}
		if res.Derived == 0 {
			return fmt.Errorf("replay: customer %s has no stored events", o.Customer)
		}
		progress(stderr, 1, 1, res.Changed, start)
		return summary(stdout, 1, res.Changed, res.Skipped, start)
	}
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	total, err := eventstore.CountCustomers(ctx, db)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	var done, changed, skipped int
	var after scope.Key
	reported := start
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("replay interrupted after %d of %d customers (%d entitlements changed); it is idempotent, run it again: %w",
				done, total, changed, err)
		}
		ids, err := eventstore.Customers(ctx, db, after, o.PageSize)
		if err != nil {
			return fmt.Errorf("replay stopped after %d of %d customers (%d entitlements changed); run it again: %w", done, total, changed, err)
		}
		if len(ids) == 0 {
			break
		}
		res, err := applyRetrying(ctx, p, projection.Input{Customers: ids, RefreshAllUsers: true, FromScratch: true}, stderr)
		if err != nil {
			return fmt.Errorf("replay stopped after %d of %d customers (%d entitlements changed), at customers %s to %s; run it again: %w",
				done, total, changed, ids[0], ids[len(ids)-1], err)
		}
		done += len(ids)
		changed += res.Changed
		skipped += res.Skipped
		after = ids[len(ids)-1]
		if time.Since(reported) >= o.ProgressEvery {
			progress(stderr, done, total, changed, start)
			reported = time.Now()
		}
	}
	progress(stderr, done, total, changed, start)
	return summary(stdout, done, changed, skipped, start)
}

func progress(w io.Writer, done, total, changed int, start time.Time) {
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	rate := float64(done) / max(time.Since(start).Seconds(), 1e-9)
	_, _ = fmt.Fprintf(w, "replay: %d/%d customers (%.1f%%), %.0f customers/s, %d entitlements changed\n", done, total, pct, rate, changed)
}

func summary(w io.Writer, customers, changed, skipped int, start time.Time) error {
	noun := "customers"
	if customers == 1 {
		noun = "customer"
	}
	_, err := fmt.Fprintf(w, "replayed %d %s in %s: %d entitlements changed\n", customers, noun, time.Since(start).Round(time.Millisecond), changed)
	if err == nil && skipped > 0 {
		_, err = fmt.Fprintf(w, "warning: %d stored events could not be decoded by this version and were left out (see the logs)\n", skipped)
	}
	return err
}

// applyRetrying applies in, retrying transient failures (Postgres restarting, a deadlock with a
// concurrent writer) up to five times with a growing pause.
func applyRetrying(ctx context.Context, p *projection.Projector, in projection.Input, stderr io.Writer) (projection.Result, error) {
	const attempts = 5
	for attempt := 1; ; attempt++ {
		res, err := p.Apply(ctx, in)
		if err == nil || attempt == attempts || projection.IsContentError(err) || ctx.Err() != nil {
			return res, err
		}
		var poison *projection.PoisonError
		if errors.As(err, &poison) {
			return res, err
		}
		wait := projection.RetryDelay(uint64(attempt)) //nolint:gosec // attempt is positive
		_, _ = fmt.Fprintf(stderr, "replay: attempt %d failed, retrying in %s: %v\n", attempt, wait, err)
		_ = backoff.Sleep(ctx, wait)
	}
}
