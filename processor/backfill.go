package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

const (
	// maxSince is how far back Stripe lists events: 30 days.
	maxSince = 30 * 24 * time.Hour
	// defaultSince is the window of `processor backfill` without --since, and of the first
	// scheduled run: Stripe's 3 days of webhook retries.
	defaultSince = 72 * time.Hour
	// checkpointEvery is how many events a backfill stores between two checkpoint writes; an
	// interrupt writes one at once, a crash repeats at most this many (harmless duplicates).
	checkpointEvery = 100
	// progressEvery is the least time between two progress lines.
	progressEvery = 2 * time.Second
	// setupTimeout bounds each setup step of the commands (connecting to NATS or Postgres) and
	// the writes done after an interrupt.
	setupTimeout = 10 * time.Second
	// publishTimeout bounds the wait for JetStream's acknowledgment of one backfilled event, as
	// the listener's PUBLISH_TIMEOUT does for a webhook.
	publishTimeout = config.DefaultPublishTimeout
)

// errInterrupted is wrapped by the error of a backfill stopped by its context (Ctrl-C, SIGTERM).
var errInterrupted = errors.New("interrupted")

// eventSource lists Stripe events; stripeAPI is the real one.
type eventSource interface {
	Events(ctx context.Context, q eventQuery) iter.Seq2[json.RawMessage, error]
}

// counts are a backfill's tallies. New events were in neither the event store nor JetStream's
// duplicate window, and were published; AlreadyHad ones were in either (the event store, at any
// age, or a received event not yet applied: PubAck.Duplicate). Skipped events could not be
// stored at all: not a Stripe event, or larger than the NATS server takes (the webhook refuses
// those too, with a 4xx).
type counts struct {
	Listed     int `json:"listed"`
	New        int `json:"new"`
	AlreadyHad int `json:"already_had"`
	Skipped    int `json:"skipped"`
}

func (c counts) String() string {
	return fmt.Sprintf("%d events listed: %d new, %d already had, %d skipped", c.Listed, c.New, c.AlreadyHad, c.Skipped)
}

// backfiller publishes the listed events the event store does not hold into the stream, as the
// listener does with a webhook, so the consumer applies them like any other (one apply path).
type backfiller struct {
	events eventSource
	// received is the event store, asked which events of a page were never received.
	received eventstore.Querier
	js       stream.Publisher
	// store and key keep a checkpoint of the run; a nil store keeps none.
	store *stateStore
	key   string
	// progress hears the tallies at most every progressEvery, and warn of each skipped event;
	// either may be nil.
	progress func(counts)
	warn     func(string)
	// account is the connected account the events are listed for ("" for the platform): an
	// event without an account gets this one, so it is stored in the account's scope.
	account string
}

// listed is one item of a listing, parsed.
type listed struct {
	raw json.RawMessage
	ev  stripeevent.Event
	err error // not a Stripe event
}

// run lists q's events and publishes those not received yet, continuing cp (its counts and
// cursor), a page at a time. It stops between two events when ctx is done, with an error
// wrapping errInterrupted; an event whose publish began is finished first, so the checkpoint it
// leaves is exact. On any stop it writes the checkpoint; it does not delete it on success (the
// caller does). cp is updated in place.
func (b *backfiller) run(ctx context.Context, q eventQuery, cp *checkpoint) error {
	q.StartingAfter = cp.StartingAfter
	r := &backfillRun{backfiller: b, cp: cp, lastSaved: cp.Counts.Listed, lastProgress: time.Now()}
	stop := func(err error) error {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", errInterrupted, err)
		}
		if b.store == nil {
			return err
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), setupTimeout)
		defer cancel()
		return errors.Join(err, b.store.saveCheckpoint(sctx, b.key, *cp))
	}
	page := make([]listed, 0, apiPageSize)
	for raw, err := range b.events.Events(ctx, q) {
		if err != nil {
			// What was listed before the failure is dealt with first: the checkpoint moves past it.
			return stop(errors.Join(r.page(ctx, page), err))
		}
		ev, perr := stripeevent.Parse(raw)
		if perr == nil && b.account != "" {
			raw, ev, perr = ofAccount(raw, ev, b.account)
		}
		if perr == nil {
			// The listener's rules: what the store or a subject cannot hold is never published.
			perr = stripeevent.Validate(ev, time.Now())
		}
		page = append(page, listed{raw: raw, ev: ev, err: perr})
		if len(page) == apiPageSize {
			if err := r.page(ctx, page); err != nil {
				return stop(err)
			}
			page = page[:0]
		}
	}
	if err := r.page(ctx, page); err != nil {
		return stop(err)
	}
	if b.progress != nil {
		b.progress(cp.Counts)
	}
	return nil
}

// backfillRun is the progress of one backfiller.run.
type backfillRun struct {
	*backfiller
	cp           *checkpoint
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
	missing, err := eventstore.Missing(ctx, r.received, ids)
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
			if id := idOf(l.raw); id != "" {
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

		if r.store != nil && cp.Counts.Listed-r.lastSaved >= checkpointEvery {
			if err := r.store.saveCheckpoint(ctx, r.key, *cp); err != nil && ctx.Err() == nil {
				return err
			}
			r.lastSaved = cp.Counts.Listed
		}
		if r.progress != nil && time.Since(r.lastProgress) >= progressEvery {
			r.progress(cp.Counts)
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
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	ack, err := stream.Publish(pctx, r.js, ev)
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

func (b *backfiller) warnf(format string, args ...any) {
	if b.warn != nil {
		b.warn(fmt.Sprintf(format, args...))
	}
}

// backfillOptions are the flags of `processor backfill`.
type backfillOptions struct {
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

// backfillCmd runs `processor backfill`.
func backfillCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseBackfillFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg, err := config.LoadBackfill(getenv)
	if err != nil {
		return err
	}
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(stderr, "backfill: "+format+"\n", args...) }
	api := newStripeAPI(cfg.Stripe, apiOptions{Rate: o.Rate, Account: o.Account, OnRetry: func(r retryInfo) { say("%s", r) }})
	defer api.close()
	sc := scope.Scope{Livemode: cfg.Stripe.Livemode(), Account: o.Account}

	pool, err := openCommandPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	store := &stateStore{db: pool}

	js, done, err := openCommandStream(ctx, cfg, "tollgate-processor-backfill")
	if err != nil {
		return err
	}
	defer done()
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()

	key, params := checkpointKey(sc, o.Since, o.Undelivered, o.Types)
	cp, found, err := store.loadCheckpoint(setupCtx, key)
	if err != nil {
		return err
	}
	switch {
	case found && !o.Restart:
		say("resuming the run of %s (%s) after event %q, %s so far; --restart starts over",
			cp.StartedAt.Format(time.RFC3339), window(cp.CreatedGTE, cp.CreatedLTE), cp.StartingAfter, cp.Counts)
	default:
		if found {
			say("--restart: dropping the checkpoint of the run of %s", cp.StartedAt.Format(time.RFC3339))
		}
		now := time.Now().UTC()
		cp = checkpoint{Params: params, CreatedGTE: now.Add(-o.Since).Unix(), CreatedLTE: now.Unix(), StartedAt: now}
		if err := store.saveCheckpoint(setupCtx, key, cp); err != nil {
			return err
		}
		say("listing events %s", window(cp.CreatedGTE, cp.CreatedLTE))
	}

	start := time.Now()
	b := &backfiller{
		events: api, received: pool, js: js, store: store, key: key, account: o.Account,
		progress: func(c counts) { say("%s", c) },
		warn:     func(msg string) { say("warning: %s", msg) },
	}
	q := eventQuery{CreatedGTE: cp.CreatedGTE, CreatedLTE: cp.CreatedLTE, Undelivered: o.Undelivered, Types: o.Types}
	if err := b.run(ctx, q, &cp); err != nil {
		if errors.Is(err, errInterrupted) {
			return fmt.Errorf("backfill interrupted after %s; the checkpoint is kept: run the same command again to resume", cp.Counts)
		}
		return fmt.Errorf("backfill stopped after %s; the checkpoint is kept: run the same command again to resume: %w", cp.Counts, err)
	}
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), setupTimeout)
	defer dcancel()
	if err := store.deleteCheckpoint(dctx, key); err != nil {
		say("warning: the run is complete but its checkpoint stays: %v", err)
	}
	_, err = fmt.Fprintf(stdout, `backfill done in %s: %s
events %s%s
"already had" means the event store holds the event (at any age), or it was received and waits
in JetStream to be applied; new events were published to JetStream for the processor to apply.
`, time.Since(start).Round(time.Millisecond), cp.Counts, window(cp.CreatedGTE, cp.CreatedLTE), filters(o))
	return err
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

// parseBackfillFlags reads and checks the flags of `processor backfill`.
func parseBackfillFlags(args []string, stderr io.Writer) (backfillOptions, error) {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := backfillOptions{Since: defaultSince}
	fs.Var((*sinceFlag)(&o.Since), "since", "list events created in this last `duration` (such as 72h, 90m or 7d; at most 30d)")
	fs.BoolVar(&o.Undelivered, "undelivered", false, "list only events whose webhooks are pending or failed (delivery_success=false)")
	fs.Func("types", "list only these comma-separated event `types` (at most 20)", func(v string) error {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				o.Types = append(o.Types, t)
			}
		}
		return nil
	})
	fs.Float64Var(&o.Rate, "rate", defaultAPIRate, "at most this many Stripe API `requests` per second")
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
		return o, fmt.Errorf("backfill: --since %s must be positive", shortDuration(o.Since))
	case o.Since > maxSince:
		return o, fmt.Errorf("backfill: --since %s reaches further back than Stripe keeps events (30 days, 720h); use at most --since 30d", shortDuration(o.Since))
	case len(o.Types) > config.MaxBackfillTypes:
		return o, fmt.Errorf("backfill: --types lists %d event types; Stripe filters on at most %d", len(o.Types), config.MaxBackfillTypes)
	case o.Account != "" && !scope.ValidAccount(o.Account):
		return o, fmt.Errorf("backfill: --account %q is not a connected account id (acct_ followed by letters and digits)", o.Account)
	case o.Rate <= 0 || o.Rate > 100:
		return o, fmt.Errorf("backfill: --rate %g must be above 0 and at most 100 (Stripe's live-mode read limit)", o.Rate)
	}
	return o, nil
}

// sinceFlag is a duration flag that also takes whole days ("7d").
type sinceFlag time.Duration

func (f *sinceFlag) String() string { return shortDuration(time.Duration(*f)) }

func (f *sinceFlag) Set(v string) error {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 72h or 7d", v)
		}
		*f = sinceFlag(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 72h or 7d", v)
	}
	*f = sinceFlag(d)
	return nil
}

// shortDuration writes 72h rather than 72h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// window describes created bounds for people.
func window(gte, lte int64) string {
	return fmt.Sprintf("created from %s to %s", time.Unix(gte, 0).UTC().Format(time.RFC3339), time.Unix(lte, 0).UTC().Format(time.RFC3339))
}

func filters(o backfillOptions) string {
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

// openCommandStream connects an operator command to JetStream and makes sure the stream exists
// (STREAM_REPLICAS as configured). done closes the connection once every publish was
// acknowledged.
func openCommandStream(ctx context.Context, cfg config.Processor, name string) (js jetstream.JetStream, done func(), err error) {
	nc, closed, err := connectCommandNATS(cfg.NATSURL, name)
	if err != nil {
		return nil, nil, err
	}
	done = func() { closeNATS(nc, closed) }
	if js, err = jetstream.New(nc); err != nil {
		done()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if _, err := stream.Ensure(setupCtx, js, stream.Options{Replicas: cfg.StreamReplicas}); err != nil {
		done()
		return nil, nil, fmt.Errorf("NATS_URL %s: JetStream not usable (is JetStream enabled?): %w", cfg.NATSURL, err)
	}
	return js, done, nil
}

// connectCommandNATS connects an operator command: one attempt, failing fast with a message
// naming NATS_URL. closed is closed once the connection is.
func connectCommandNATS(url, name string) (*nats.Conn, chan struct{}, error) {
	closed := make(chan struct{})
	nc, err := nats.Connect(url, nats.Name(name), nats.Timeout(5*time.Second),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return nil, nil, fmt.Errorf("NATS_URL %s: %w", url, err)
	}
	return nc, closed, nil
}

// closeNATS closes a command's connection (every publish was acknowledged already) and waits
// for it to be closed.
func closeNATS(nc *nats.Conn, closed <-chan struct{}) {
	nc.Close()
	select {
	case <-closed:
	case <-time.After(setupTimeout):
	}
}
