// Package backfill recovers the events Stripe could not deliver: it lists them from the Stripe
// API and publishes those the event store lacks into the stream (the one apply path). It owns
// the backfill_state table (checkpoints of interrupted runs, the last scheduled run and the
// last reconcile) and the advisory lock that lets one processor at a time run the scheduler.
package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/tollgate/tollgate/processor/internal/stripeapi"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

const (
	// MaxSince is how far back Stripe lists events: 30 days.
	MaxSince = 30 * 24 * time.Hour
	// DefaultSince is the window of `processor backfill` without --since, and of the first
	// scheduled run: Stripe's 3 days of webhook retries.
	DefaultSince = 72 * time.Hour
	// checkpointEvery is how many events a backfill stores between two checkpoint writes; an
	// interrupt writes one at once, a crash repeats at most this many (harmless duplicates).
	checkpointEvery = 100
	// ProgressEvery is the least time between two progress lines.
	ProgressEvery = 2 * time.Second
	// SetupTimeout bounds each setup step of the commands (connecting to NATS or Postgres) and
	// the writes done after an interrupt.
	SetupTimeout = 10 * time.Second
	// PublishTimeout bounds the wait for JetStream's acknowledgment of one backfilled event, as
	// the listener's PUBLISH_TIMEOUT does for a webhook.
	PublishTimeout = config.DefaultPublishTimeout
)

// ErrInterrupted is wrapped by the error of a backfill stopped by its context (Ctrl-C, SIGTERM).
var ErrInterrupted = errors.New("interrupted")

// eventSource lists Stripe events; stripeAPI is the real one.
type eventSource interface {
	Events(ctx context.Context, q stripeapi.EventQuery) iter.Seq2[json.RawMessage, error]
}

// Counts are a backfill's tallies. New events were in neither the event store nor JetStream's
// duplicate window, and were published; AlreadyHad ones were in either (the event store, at any
// age, or a received event not yet applied: PubAck.Duplicate). Skipped events could not be
// stored at all: not a Stripe event, or larger than the NATS server takes (the webhook refuses
// those too, with a 4xx).
type Counts struct {
	Listed     int `json:"listed"`
	New        int `json:"new"`
	AlreadyHad int `json:"already_had"`
	Skipped    int `json:"skipped"`
}

func (c Counts) String() string {
	return fmt.Sprintf("%d events listed: %d new, %d already had, %d skipped", c.Listed, c.New, c.AlreadyHad, c.Skipped)
}

// Backfiller publishes the listed events the event store does not hold into the stream, as the
// listener does with a webhook, so the consumer applies them like any other (one apply path).
type Backfiller struct {
	Events eventSource
	// Received is the event store, asked which events of a page were never received.
	Received eventstore.Querier
	JS       stream.Publisher
	// Store and key keep a checkpoint of the run; a nil store keeps none.
	Store *StateStore
	Key   string
	// Progress hears the tallies at most every progressEvery, and warn of each skipped event;
	// either may be nil.
	Progress func(Counts)
	Warn     func(string)
	// Account is the connected account the events are listed for ("" for the platform): an
	// event without an account gets this one, so it is stored in the account's scope.
	Account string
}

// listed is one item of a listing, parsed.
type listed struct {
	raw json.RawMessage
	ev  stripeevent.Event
	err error // not a Stripe event
}

// Run lists q's events and publishes those not received yet, continuing cp (its counts and
// cursor), a page at a time. It stops between two events when ctx is done, with an error
// wrapping errInterrupted; an event whose publish began is finished first, so the checkpoint it
// leaves is exact. On any stop it writes the checkpoint; it does not delete it on success (the
// caller does). cp is updated in place.
func (b *Backfiller) Run(ctx context.Context, q stripeapi.EventQuery, cp *Checkpoint) error {
	q.StartingAfter = cp.StartingAfter
	r := &backfillRun{Backfiller: b, cp: cp, lastSaved: cp.Counts.Listed, lastProgress: time.Now()}
	stop := func(err error) error {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrInterrupted, err)
		}
		if b.Store == nil {
			return err
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), SetupTimeout)
		defer cancel()
		return errors.Join(err, b.Store.SaveCheckpoint(sctx, b.Key, *cp))
	}
	page := make([]listed, 0, stripeapi.PageSize)
	for raw, err := range b.Events.Events(ctx, q) {
		if err != nil {
			// What was listed before the failure is dealt with first: the checkpoint moves past it.
			return stop(errors.Join(r.page(ctx, page), err))
		}
		ev, perr := stripeevent.Parse(raw)
		if perr == nil && b.Account != "" {
			raw, ev, perr = ofAccount(raw, ev, b.Account)
		}
		if perr == nil {
			// The listener's rules: what the store or a subject cannot hold is never published.
			perr = stripeevent.Validate(ev, time.Now())
		}
		page = append(page, listed{raw: raw, ev: ev, err: perr})
		if len(page) == stripeapi.PageSize {
			if err := r.page(ctx, page); err != nil {
				return stop(err)
			}
			page = page[:0]
		}
	}
	if err := r.page(ctx, page); err != nil {
		return stop(err)
	}
	if b.Progress != nil {
		b.Progress(cp.Counts)
	}
	return nil
}

// backfillRun is the progress of one backfiller.run.
type backfillRun struct {
	*Backfiller
	cp           *Checkpoint
	lastSaved    int
	lastProgress time.Time
}

// page deals with a page of listed events in order: it asks the event store which it lacks and
// publishes those. It returns ctx's error when ctx is done before an event.
func (r *backfillRun) page(ctx context.Context, page []listed) error {
	if len(page) == 0 {
		return nil
	}
	ids := make([]string, 0, len(page))
	for _, l := range page {
		if l.err == nil {
			ids = append(ids, l.ev.ID)
		}
	}
	missing, err := eventstore.Missing(ctx, r.Received, ids)
	if err != nil {
		return err
	}
	toPublish := make(map[string]bool, len(missing))
	for _, id := range missing {
		toPublish[id] = true
	}
	cp := r.cp
	for _, l := range page {
		if err := ctx.Err(); err != nil {
			return err
		}
		// An event counts as listed once it is dealt with, so a resumed run counts it once.
		if l.err != nil {
			cp.Counts.Listed++
			cp.Counts.Skipped++
			r.warnf("skipped an item of the list that is not a Stripe event (the webhook would refuse it too): %v", l.err)
			if id := stripeapi.IDOf(l.raw); id != "" {
				cp.StartingAfter = id
			}
			continue
		}
		ev := l.ev
		if !toPublish[ev.ID] {
			cp.Counts.AlreadyHad++
		} else if err := r.publish(ctx, ev); err != nil {
			return err
		}
		cp.Counts.Listed++
		cp.StartingAfter = ev.ID

		if r.Store != nil && cp.Counts.Listed-r.lastSaved >= checkpointEvery {
			if err := r.Store.SaveCheckpoint(ctx, r.Key, *cp); err != nil && ctx.Err() == nil {
				return err
			}
			r.lastSaved = cp.Counts.Listed
		}
		if r.Progress != nil && time.Since(r.lastProgress) >= ProgressEvery {
			r.Progress(cp.Counts)
			r.lastProgress = time.Now()
		}
	}
	return nil
}

// publish stores one event not yet received in the stream and counts it.
func (r *backfillRun) publish(ctx context.Context, ev stripeevent.Event) error {
	// WARNING: the publish is detached from ctx, so an interrupt never cuts it halfway, and
	// the cursor moves past an event only after JetStream acknowledged it. Advancing it first
	// would let a resumed run skip an event that was never stored.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), PublishTimeout)
	ack, err := stream.Publish(pctx, r.JS, ev)
	cancel()
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		r.cp.Counts.Skipped++
		r.warnf("skipped event %s (%s): larger than the NATS server's max_payload (the webhook answers 413 to it too)", ev.ID, ev.Type)
	case err != nil:
		return err
	case ack.Duplicate:
		r.cp.Counts.AlreadyHad++ // received by webhook, not applied yet
	default:
		r.cp.Counts.New++
	}
	return nil
}

func (b *Backfiller) warnf(format string, args ...any) {
	if b.Warn != nil {
		b.Warn(fmt.Sprintf(format, args...))
	}
}

// ofAccount makes a listed event one of account's: an event listed with Stripe-Account may not
// say its account (webhooks of connected accounts do), so it gets "account" set (its fields
// otherwise as listed), else it would be stored in the platform's scope. An event of another
// account is an error.
func ofAccount(raw json.RawMessage, ev stripeevent.Event, account string) (json.RawMessage, stripeevent.Event, error) {
	switch ev.Account {
	case account:
		return raw, ev, nil
	case "":
	default:
		return raw, ev, fmt.Errorf("event %s is of account %s, listed for %s", ev.ID, ev.Account, account)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return raw, ev, fmt.Errorf("event %s: %w", ev.ID, err)
	}
	acct, err := json.Marshal(account)
	if err != nil {
		return raw, ev, fmt.Errorf("event %s: %w", ev.ID, err)
	}
	fields["account"] = acct
	out, err := json.Marshal(fields)
	if err != nil {
		return raw, ev, fmt.Errorf("event %s: %w", ev.ID, err)
	}
	ev, err = stripeevent.Parse(out)
	return out, ev, err
}

// ShortDuration writes 72h rather than 72h0m0s.
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
