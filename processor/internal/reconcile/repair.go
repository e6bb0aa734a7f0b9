package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tollgate/tollgate/processor/internal/backfill"
	"github.com/tollgate/tollgate/processor/internal/jsconn"
	"github.com/tollgate/tollgate/processor/internal/repairer"
	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/pkg/backoff"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/repair"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stream"
)

// DefaultRepairWait is how long reconcile --repair waits for the processor to apply its
// snapshot events before it compares again.
const DefaultRepairWait = time.Minute

// Once lists Stripe's subscriptions and compares the read model with them, in one
// read-only REPEATABLE READ transaction (one snapshot for all pages), Stripe first: the read
// model's snapshot is then taken after the listing, not minutes before.
func Once(ctx context.Context, api subscriptionSource, pool *pgxpool.Pool, sc scope.Scope, customerID string, say func(string, ...any)) (Report, error) {
	stripeSubs, listed, err := listStripe(ctx, api, customerID, func(n int) { say("%d Stripe subscriptions listed", n) })
	if err != nil {
		return Report{}, fmt.Errorf("reconcile: %w", err)
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Report{}, fmt.Errorf("DATABASE_URL: begin a read-only transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	r, err := compareReadModel(ctx, tx, sc, stripeSubs, customerID)
	if err != nil {
		return Report{}, fmt.Errorf("reconcile: %w", err)
	}
	r.Subscriptions = listed
	return r, nil
}

// RepairDrift reads each drifted subscription that Stripe has (missing, different status)
// together with its customer and publishes them as snapshot events into the stream, where the
// processor applies them as it applies every event; then it waits, up to wait, until the event
// store holds them all. A subscription unknown to Stripe has nothing to read and is left as it is.
func RepairDrift(ctx context.Context, cfg config.Processor, api repairer.ObjectReader, pool *pgxpool.Pool, sc scope.Scope, drift []Drift, wait time.Duration, say func(string, ...any)) error {
	js, done, err := jsconn.OpenCommandStream(ctx, cfg, "tollgate-processor-reconcile")
	if err != nil {
		return err
	}
	defer done()
	source := fmt.Sprintf("reconcile_%d", time.Now().UnixNano())
	var ids []string
	for _, d := range drift {
		if d.Kind == DriftUnknownToStripe {
			say("repair: %s of %s is unknown to Stripe: nothing to read, left as it is", d.SubscriptionID, d.CustomerID)
			continue
		}
		rp := repair.Repair{ObjectType: repair.ObjectSubscription, ObjectID: d.SubscriptionID, Livemode: sc.Livemode, Account: sc.Account,
			SourceEventID: source, Reason: repair.ReasonReconcile}
		evs, err := repairer.Snapshots(ctx, api, rp, time.Now)
		if errors.Is(err, stripeapi.ErrObjectNotFound) {
			say("repair: %s is gone from Stripe since the listing; left as it is", d.SubscriptionID)
			continue
		}
		if err != nil {
			return fmt.Errorf("repair %s: %w", d.SubscriptionID, err)
		}
		for _, ev := range evs {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), backfill.PublishTimeout)
			_, err := stream.Publish(pctx, js, ev)
			cancel()
			if err != nil {
				return fmt.Errorf("repair %s: %w", d.SubscriptionID, err)
			}
			ids = append(ids, ev.ID)
		}
		say("repair: %s (%s) read from Stripe and published as %d snapshot events", d.SubscriptionID, d.Kind, len(evs))
	}
	if len(ids) == 0 {
		return nil
	}
	deadline := time.Now().Add(wait)
	for {
		missing, err := eventstore.Missing(ctx, pool, ids)
		if err != nil {
			return fmt.Errorf("repair: %w", err)
		}
		if len(missing) == 0 {
			say("repair: the processor applied all %d snapshot events", len(ids))
			return nil
		}
		if time.Now().After(deadline) {
			say("repair: %d of %d snapshot events not applied within %s (is a processor running?); they stay in the stream", len(missing), len(ids), wait)
			return nil
		}
		if err := backoff.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// WriteRepairReport prints the comparison made after the repair.
func WriteRepairReport(w io.Writer, r Report, customerID string) error {
	if _, err := io.WriteString(w, "\nAfter the repair:\n"); err != nil {
		return err
	}
	return WriteReport(w, r, customerID)
}
