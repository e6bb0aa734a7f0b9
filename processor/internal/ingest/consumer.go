// Package ingest is the processor's JetStream side: the durable consumer that fetches batches,
// hands them to the projection, and settles each message (ack, retry, dead letter) in one
// place; it purges applied events from the stream and pauses fetching while Postgres is down.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/processor/internal/projection"
	"github.com/tollgate/tollgate/processor/internal/service"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/backoff"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/stream"
	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// Durable is the name of the processor's durable consumer, which every instance shares.
const Durable = "tollgate-processor"

// Options tune the JetStream consumer and its batches. defaultConsumerOptions are
// production's; tests shorten the waits.
type Options struct {
	// Durable names the consumer. Every processor instance shares it, so the stream's messages
	// are spread over the instances and each is delivered to one at a time.
	Durable string
	// BatchSize is the most messages fetched at once, unless a backlog grows the batches.
	BatchSize int
	// MaxBatch is the most messages fetched at once while a backlog exists: after a batch of at
	// least BatchSize messages applied within BatchTime, the next fetch asks for twice as many,
	// up to MaxBatch and BatchBytes; a batch under BatchSize (the backlog is gone) brings it back
	// to BatchSize, one slower than twice BatchTime halves it. Up to BatchSize keeps every
	// fetch at BatchSize.
	MaxBatch int
	// BatchBytes bounds the bytes of a grown fetch. A message larger than it is fetched by the
	// next fetch of BatchSize, which has no byte bound.
	BatchBytes int
	// BatchTime is how long a batch may take to apply and still grow the next one.
	BatchTime time.Duration
	// Parallel is how many transactions apply one batch at once, each the events of its own
	// share of the batch's customers (by a hash of the customer), so that one transaction's
	// Postgres work overlaps another's derivation. 1 applies a batch in one transaction.
	Parallel int
	// FetchWait is how long an idle fetch waits for the next message before asking again.
	FetchWait time.Duration
	// AckWait is how long JetStream waits for the acknowledgment of a delivered message before
	// delivering it again (to any instance).
	AckWait time.Duration
	// TxTimeout bounds one batch's transaction; it stays below AckWait so that a batch is
	// settled before JetStream gives its messages to another instance.
	TxTimeout time.Duration
	// MaxAckPending bounds the messages delivered and not yet settled, over all instances.
	MaxAckPending int
	// PoisonAttempts is the delivery on which a message at fault is dead-lettered, unless its
	// fault is permanent (unparseable), which is dead-lettered on the first.
	PoisonAttempts uint64
	// PoisonRetryDelay is the redelivery delay of a message at fault that has attempts left.
	PoisonRetryDelay time.Duration
	// RetainApplied is how long an applied event stays in the stream (STREAM_RETAIN_APPLIED,
	// stream.Retainer): the window that gives a database back the commits a failover lost
	// (WatchTimeline). 0 purges at once (tests).
	RetainApplied time.Duration

	// Crash, when set, is called at two points of every batch: "fetched" (before the
	// transaction) and "committed" (after the commit, before the acknowledgments). Returning
	// true stops the consumer there without settling anything, as a kill -9 would. Tests only.
	Crash func(stage string) bool
	// Fault, when set, is asked before each transaction about each of its events; an error
	// fails the transaction as an unforeseen failure would (not a Postgres error). Tests only.
	Fault func(stripeevent.Event) error
}

func DefaultOptions() Options {
	return Options{
		Durable:          Durable,
		BatchSize:        1000,
		MaxBatch:         8000,
		BatchBytes:       32 << 20,
		BatchTime:        time.Second,
		Parallel:         2,
		FetchWait:        5 * time.Second,
		AckWait:          30 * time.Second,
		TxTimeout:        20 * time.Second,
		MaxAckPending:    20_000,
		PoisonAttempts:   3,
		PoisonRetryDelay: 10 * time.Second,
	}
}

// consumerConfig is the durable pull consumer of the processor.
//
// MaxDeliver is unlimited on purpose. JetStream's own limit would silently stop delivering a
// message after N failed attempts, and a long enough Postgres outage fails every message that
// many times: that is loss. The processor bounds attempts itself where they can be bounded
// safely: a message at fault is dead-lettered on its PoisonAttempts-th delivery (settle), and
// while Postgres is down the consumer does not fetch at all (waitForPostgres), so an outage costs
// a message at most one delivery.
//
// Failures the processor sees are redelivered after the delay of its NakWithDelay (settle); a
// message whose acknowledgment never comes (its instance crashed or hangs) comes back after
// AckWait. There is no BackOff list: servers before 2.10 refuse one with an unlimited MaxDeliver,
// and the delays that matter are the processor's own.
func consumerConfig(o Options) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       o.Durable,
		Description:   "Tollgate processor: event store and entitlement read model",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: o.MaxAckPending,
		FilterSubject: stream.AllSubjects,
	}
}

// consumerDB is what the consumer needs of Postgres besides the projector: record dead letters
// and know whether the database answers.
type consumerDB interface {
	eventstore.Execer
	Ping(ctx context.Context) error
}

// Consumer fetches batches of events from JetStream and applies them with the projector.
type Consumer struct {
	js      jetstream.JetStream
	mu      sync.Mutex
	cons    jetstream.Consumer // replaced by ensure when the consumer was deleted: use jsConsumer
	proj    *projection.Projector
	db      consumerDB
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	size    atomic.Int64 // messages the next fetch asks for (grow)
	seed    maphash.Seed // spreads customers over a batch's shares
}

// PurgeEvery is how often the consumer checks, besides after each batch, whether its ack floor
// moved past the last purge. Acks are asynchronous, so the floor may lag the batch that moved
// it; the check catches up and empties the stream once traffic stops.
const PurgeEvery = time.Second

// backlogWait is how long a grown fetch waits for the rest of its batch.
const backlogWait = 50 * time.Millisecond

// ErrCrashed is returned by run when the crash hook of tests stopped it.
var ErrCrashed = errors.New("consumer stopped by the crash hook")

// errReleased marks a message fetched ahead and handed back unapplied (shutdown, outage).
var errReleased = errors.New("released unapplied")

// NewConsumer creates or updates the durable consumer on the stream, which must exist.
func NewConsumer(ctx context.Context, js jetstream.JetStream, db consumerDB, proj *projection.Projector, opts Options, log *slog.Logger, m *Metrics) (*Consumer, error) {
	c := &Consumer{js: js, proj: proj, db: db, opts: opts, log: log, metrics: m, seed: maphash.MakeSeed()}
	c.size.Store(int64(opts.BatchSize))
	if err := c.ensure(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// ensure creates the durable consumer, or updates it to consumerConfig.
func (c *Consumer) ensure(ctx context.Context) error {
	cons, err := c.js.CreateOrUpdateConsumer(ctx, stream.Name, consumerConfig(c.opts))
	if err != nil {
		return fmt.Errorf("create consumer %s on stream %s: %w", c.opts.Durable, stream.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cons = cons
	return nil
}

func (c *Consumer) JsConsumer() jetstream.Consumer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cons
}

// delivery is one fetched message and what became of it.
type delivery struct {
	msg       jetstream.Msg
	seq       uint64 // stream sequence
	delivered uint64 // JetStream's NumDelivered, 1 on the first delivery
	event     projection.Admitted
	err       error // nil once applied; see settle
}

// batch is a fetched batch, each message read and admitted, and the fetch's error (ds holds
// whatever arrived before it).
type batch struct {
	ds    []delivery
	asked int // messages the fetch asked for
	err   error
}

// Run fetches and applies batches until ctx is done. While one batch's transaction runs, the next
// batch is fetched and admitted (parsed and decoded) in the background, so that the processor's
// CPU work overlaps Postgres's. When ctx is cancelled, the batch being applied runs to its end
// (commit, then acknowledgments); a batch fetched ahead is released untouched (Nak: JetStream
// redelivers it at once, to another instance if there is one) and nothing more is fetched. Fetch
// errors (NATS unreachable) are retried with a backoff. The only error is errCrashed (tests).
// Meanwhile purgeLoop removes the applied events from the stream after each batch.
func (c *Consumer) Run(ctx context.Context) error {
	purgeCtx, stopPurge := context.WithCancel(ctx)
	settled := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { c.purgeLoop(purgeCtx, settled) })
	defer wg.Wait()
	defer stopPurge()

	var ahead chan batch // the fetch running in the background, nil when none
	failures := 0        // fetches failed in a row
	for {
		var b batch
		if ahead != nil {
			b, ahead = <-ahead, nil
		} else {
			b = c.fetchBatch(ctx)
		}
		if ctx.Err() != nil {
			c.release(b)
			return nil
		}
		if len(b.ds) > 0 {
			ahead = make(chan batch, 1)
			go func(ch chan<- batch) { ch <- c.fetchBatch(ctx) }(ahead)
			// WARNING: the batch must not see ctx's cancellation. A SIGTERM between the commit
			// and the acks would otherwise leave committed events unacknowledged (harmless but
			// slow: redelivered after AckWait) or abort a transaction halfway (harmless, but
			// the shutdown promise is to finish the current batch).
			began := time.Now()
			ok, err := c.handle(context.WithoutCancel(ctx), b.ds)
			c.grow(b.asked, len(b.ds), time.Since(began))
			if err != nil {
				<-ahead // killed: the batch fetched ahead is left unsettled too
				return err
			}
			select {
			case settled <- struct{}{}:
			default: // a purge is already due
			}
			if !ok {
				c.release(<-ahead)
				ahead = nil
				c.waitForPostgres(ctx)
			}
		}
		if b.err == nil || ctx.Err() != nil {
			failures = 0
			continue
		}
		failures++
		wait := retryBackoff().Delay(failures)
		c.log.Warn("fetch from JetStream failed; retrying", "error", b.err, "retry_in", wait.String())
		if errors.Is(b.err, jetstream.ErrConsumerDeleted) || errors.Is(b.err, jetstream.ErrConsumerNotFound) {
			if err := c.ensure(ctx); err != nil {
				c.log.Warn("recreate consumer failed", "error", err)
			}
		}
		_ = backoff.Sleep(ctx, wait)
	}
}

// purgeLoop purges the stream after each settled batch (a value on settled) and every purgeEvery,
// until ctx is done.
func (c *Consumer) purgeLoop(ctx context.Context, settled <-chan struct{}) {
	r := &stream.Retainer{Keep: c.opts.RetainApplied}
	service.Loop{Interval: PurgeEvery, Wake: settled, Delay: true}.Run(ctx, func(ctx context.Context) service.Next {
		c.purge(ctx, r)
		return service.Wait
	})
}

// purge removes from the stream the events applied for longer than the retention window
// (stream.Retainer; all applied ones with a window of 0). A failure is logged and counted, not
// returned: it only delays the removal until the next purge.
func (c *Consumer) purge(ctx context.Context, r *stream.Retainer) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := r.Purge(ctx, c.js, c.JsConsumer()); err != nil {
		c.purgeFailed(ctx, err)
	}
}

func (c *Consumer) purgeFailed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // stopping
	}
	c.metrics.PurgeErrors.Inc()
	c.log.Warn("could not purge applied events from the stream; the next purge removes them", "error", err)
}

// fetchBatch fetches the next batch and reads each message: its JetStream metadata and admit.
func (c *Consumer) fetchBatch(ctx context.Context) batch {
	asked := int(c.size.Load())
	msgs, err := c.fetch(ctx, asked)
	ds := make([]delivery, len(msgs))
	for i, m := range msgs {
		d := &ds[i]
		d.msg, d.delivered = m, 1
		meta, err := m.Metadata()
		if err != nil {
			d.err = fmt.Errorf("read JetStream metadata: %w", err)
			continue
		}
		d.seq, d.delivered = meta.Sequence.Stream, meta.NumDelivered
		if d.delivered > 1 {
			c.metrics.Redeliveries.Inc()
		}
		d.event, d.err = projection.Admit(m.Data())
		// Defence in depth: a snapshot event (tgsnap_…, tollgate.…) is applied only when the
		// repair path published it, however it got into the stream (a forged webhook past the
		// listener, a raw publish with a stolen credential).
		if d.err == nil {
			if err := stream.CheckOrigin(m.Subject(), m.Headers(), d.event.Event); err != nil {
				d.err = projection.Refused(err)
			}
		}
	}
	return batch{ds: ds, asked: asked, err: err}
}

// grow sets the size of the next fetch from the batch just applied (asked for, got, applied
// in took): twice as large while a backlog fills batches of BatchSize or more and each applies
// within BatchTime, up to MaxBatch. Larger batches drain a backlog faster (a customer with
// several events in one batch is derived and written once, and each statement carries more
// rows): 80,000 events of 6,000 customers drained at 3,190-3,300 events/s in batches of 1,000,
// 4,430 in batches of 8,000 (bench/drain.md). The ahead fetch already running keeps its size;
// the one after it takes the new one.
func (c *Consumer) grow(asked, got int, took time.Duration) {
	base := c.opts.BatchSize
	next := base
	switch {
	case c.opts.MaxBatch <= base || got < base:
	case took <= c.opts.BatchTime:
		next = min(2*asked, c.opts.MaxBatch)
	case took <= 2*c.opts.BatchTime:
		next = asked
	default:
		next = max(asked/2, base)
	}
	c.size.Store(int64(next))
}

// release hands a batch that was fetched but will not be applied back to JetStream.
func (c *Consumer) release(b batch) {
	for i := range b.ds {
		b.ds[i].err = errReleased
		c.settle(context.Background(), &b.ds[i])
	}
}

// fetch returns the next batch: whatever is waiting, up to size, at once; when nothing is,
// it waits up to FetchWait for one message and takes whatever else came with it, so a lone event
// is applied without delay and a burst fills whole batches. A size over BatchSize (a backlog,
// grow) is also bounded by BatchBytes. Messages come back even with an error.
func (c *Consumer) fetch(ctx context.Context, size int) ([]jetstream.Msg, error) {
	cons := c.JsConsumer()
	var msgs []jetstream.Msg
	var err error
	if size > c.opts.BatchSize {
		// The backlog fills the request at once; the wait only counts when it ends just then.
		msgs, err = collect(cons.Fetch(size, jetstream.FetchMaxBytes(c.opts.BatchBytes), jetstream.FetchMaxWait(backlogWait)))
	} else {
		msgs, err = collect(cons.FetchNoWait(c.opts.BatchSize))
	}
	if len(msgs) > 0 || err != nil {
		return msgs, err
	}
	wctx, cancel := context.WithTimeout(ctx, c.opts.FetchWait)
	msgs, err = collect(cons.Fetch(1, jetstream.FetchContext(wctx)))
	cancel()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, nats.ErrTimeout) {
		err = nil // nothing arrived in time, or we are stopping
	}
	if len(msgs) == 0 || c.opts.BatchSize == 1 {
		return msgs, err
	}
	more, err := collect(cons.FetchNoWait(c.opts.BatchSize - 1))
	return append(msgs, more...), err
}

func collect(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, batch.Error()
}

// handle applies one batch and settles each of its messages. Messages that failed admit (poison)
// were split out when fetched, so they never fail the transaction of the others. It reports
// false when a failure looked like an outage, so run waits for Postgres before fetching more.
func (c *Consumer) handle(ctx context.Context, ds []delivery) (bool, error) {
	start := time.Now()
	c.metrics.BatchSize.Observe(float64(len(ds)))
	good := make([]*delivery, 0, len(ds))
	for i := range ds {
		if ds[i].err == nil {
			good = append(good, &ds[i])
		}
	}
	if c.opts.Crash != nil && c.opts.Crash("fetched") {
		return false, ErrCrashed
	}
	if err := c.applyBatch(ctx, good); err != nil {
		return false, err
	}
	healthy := true
	for i := range ds {
		healthy = c.settle(ctx, &ds[i]) && healthy
	}
	c.metrics.BatchDuration.Observe(time.Since(start).Seconds())
	return healthy, nil
}

// applyBatch applies the admitted messages and records the outcome in each delivery's err: in
// Parallel transactions at once, each holding every event of its share of the customers
// (shares), so that no two of them wait for each other's customer locks. When a transaction fails
// and Postgres still answers, whatever the error (a refused value, a panic, an encoding error
// nobody foresaw), its messages are split in halves and each applied on its own, down to the
// message at fault: the others commit and are acked, so a poison message never brings the good
// ones of its batch back with it. A message that fails alone while Postgres answers is a
// poisonError, counted by its deliveries and dead-lettered after PoisonAttempts (settle). When
// Postgres does not answer, every message is left to transient retry and the consumer waits for
// Postgres.
func (c *Consumer) applyBatch(ctx context.Context, good []*delivery) error {
	if len(good) == 0 {
		return nil
	}
	parts := shares(good, c.opts.Parallel, c.seed)
	failed := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Go(func() { failed[i] = c.applyEvents(ctx, part) })
	}
	wg.Wait()
	if err := errors.Join(failed...); err == nil {
		if c.opts.Crash != nil && c.opts.Crash("committed") {
			return ErrCrashed
		}
		return nil
	}
	for i, err := range failed {
		if err == nil {
			continue
		}
		if len(parts[i]) > 1 {
			c.log.Warn("batch not applied; isolating the message at fault", "messages", len(parts[i]), "error", err)
		}
		c.isolate(ctx, parts[i], err)
	}
	return nil
}

// shares splits ds into at most n parts by the hash of each event's customer (in its scope), or
// of its id when it has none, so that all of a customer's events are in one part. A batch of one
// customer is one part.
func shares(ds []*delivery, n int, seed maphash.Seed) [][]*delivery {
	if n <= 1 || len(ds) == 1 {
		return [][]*delivery{ds}
	}
	parts := make([][]*delivery, n)
	for _, d := range ds {
		e := d.event.Event
		key := e.ID
		if e.CustomerID != "" {
			key = projection.ScopeOf(e).Of(e.CustomerID).String()
		}
		i := maphash.String(seed, key) % uint64(n)
		parts[i] = append(parts[i], d)
	}
	return slices.DeleteFunc(parts, func(p []*delivery) bool { return len(p) == 0 })
}

// isolate records the outcome of ds, whose transaction together failed with err: split in
// halves, each applied in its own transaction, recursively (about 2·log2(n) transactions for one
// culprit), while Postgres answers.
func (c *Consumer) isolate(ctx context.Context, ds []*delivery, err error) {
	if !c.postgresAnswers(ctx) {
		c.log.Warn("postgres does not answer; the messages will be redelivered", "messages", len(ds), "error", err)
		for _, d := range ds {
			d.err = err
		}
		return
	}
	if len(ds) == 1 {
		ds[0].err = projection.AsPoison(err)
		return
	}
	mid := len(ds) / 2
	for _, half := range [][]*delivery{ds[:mid], ds[mid:]} {
		if err := c.applyEvents(ctx, half); err != nil {
			c.isolate(ctx, half, err)
		}
	}
}

// postgresAnswers reports whether Postgres answers a ping: a failure then is the batch's, not
// an outage's.
func (c *Consumer) postgresAnswers(ctx context.Context) bool {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.db.Ping(pctx) == nil
}

func (c *Consumer) applyEvents(ctx context.Context, ds []*delivery) error {
	events := make([]projection.Admitted, len(ds))
	for i, d := range ds {
		events[i] = d.event
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.TxTimeout)
	defer cancel()
	if c.opts.Fault != nil {
		for _, e := range events {
			if err := c.opts.Fault(e.Event); err != nil {
				return err
			}
		}
	}
	_, err := c.proj.Apply(ctx, projection.Input{Events: events})
	return err
}

// settle is the one place that decides what becomes of a message, from the error its
// processing ended with:
//
//	nil                                        Ack: its transaction has committed
//	errReleased                                Nak: never tried, redeliver at once
//	*poisonError, permanent or out of attempts record in dead_letters, then Term
//	*poisonError with attempts left            NakWithDelay(PoisonRetryDelay ± 50%)
//	anything else: transient                   NakWithDelay(retryDelay(deliveries so far))
//
// The delays are jittered so that messages failed together do not come back together.
//
// It reports false for a transient failure (also when a dead letter could not be recorded).
// Settling is best effort: an Ack or Nak lost on the way only makes JetStream deliver the
// message again after its ack wait, which the idempotent projection absorbs.
func (c *Consumer) settle(ctx context.Context, d *delivery) bool {
	var (
		poison    *projection.PoisonError
		err       error
		outcome   string
		transient bool
	)
	switch {
	case d.err == nil:
		// WARNING: only ever reached after the transaction that stored and applied the event
		// committed (applyBatch returns before). An Ack before the commit loses the event if
		// the commit then fails or the process dies.
		outcome, err = "ack", d.msg.Ack()
		c.metrics.Events.WithLabelValues(EventTypeLabel(d.event.Event.Type)).Inc()
	case errors.Is(d.err, errReleased):
		outcome, err = "released", d.msg.Nak()
	case errors.As(d.err, &poison) && (poison.Permanent || d.delivered >= c.opts.PoisonAttempts):
		if dlErr := c.deadLetter(ctx, d, poison.Reason); dlErr != nil {
			c.log.Error("could not record dead letter; message will be redelivered", "stream_seq", d.seq, "error", dlErr)
			outcome, err, transient = "retry", d.msg.NakWithDelay(projection.RetryDelay(d.delivered)), true
			break
		}
		// WARNING: Term only after the dead letter is committed (deadLetter returned nil): a
		// Term first and a failed insert would drop the event for good. (Term, not
		// TermWithReason: servers before 2.10.4 ignore the latter and redeliver.)
		outcome, err = "dead_letter", d.msg.Term()
		c.log.Warn("message dead-lettered", "stream_seq", d.seq, "subject", d.msg.Subject(), "event", d.event.Event.ID,
			"deliveries", d.delivered, "reason", poison.Reason)
	case errors.As(d.err, &poison):
		outcome, err = "poison_retry", d.msg.NakWithDelay(backoff.Policy{Base: c.opts.PoisonRetryDelay}.Delay(1))
		c.log.Warn("message cannot be applied; retrying before dead-lettering", "stream_seq", d.seq, "subject", d.msg.Subject(),
			"deliveries", d.delivered, "dead_letter_at", c.opts.PoisonAttempts, "reason", poison.Reason)
	default:
		outcome, err, transient = "retry", d.msg.NakWithDelay(projection.RetryDelay(d.delivered)), true
	}
	c.metrics.Outcomes.WithLabelValues(outcome).Inc()
	if err != nil {
		c.log.Warn("could not settle message; JetStream redelivers it after the ack wait", "stream_seq", d.seq, "outcome", outcome, "error", err)
	}
	return !transient
}

// deadLetter records the message in dead_letters, with its raw bytes, subject, stream sequence,
// deliveries so far and reason.
func (c *Consumer) deadLetter(ctx context.Context, d *delivery, reason string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id := d.event.Event.ID
	if id == "" {
		id = EventIDOf(d.msg.Data())
	}
	return eventstore.RecordDeadLetter(ctx, c.db, eventstore.DeadLetter{
		EventID:   id,
		Subject:   d.msg.Subject(),
		StreamSeq: d.seq,
		Payload:   d.msg.Data(),
		Reason:    reason,
		Attempts:  int(min(d.delivered, 1<<31-1)), //nolint:gosec // bounded above
	})
}

// waitForPostgres blocks until Postgres answers a ping or ctx is done. Fetching while Postgres
// is down would only fail batch after batch and spend a delivery attempt of every message.
func (c *Consumer) waitForPostgres(ctx context.Context) {
	c.metrics.Paused.Set(1)
	defer c.metrics.Paused.Set(0)
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.db.Ping(pctx)
		cancel()
		if err == nil {
			if attempt > 1 {
				c.log.Info("postgres answers again; fetching resumes")
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		if attempt == 1 {
			c.log.Warn("postgres does not answer; fetching paused until it does", "error", err)
		}
		_ = backoff.Sleep(ctx, retryBackoff().Delay(attempt))
	}
}

// retryBackoff spaces the consumer's retries of a failed fetch and its pings of a Postgres
// that does not answer: 250 ms doubling up to 5 s, with pkg/backoff's jitter.
func retryBackoff() backoff.Policy {
	return backoff.Policy{Base: 250 * time.Millisecond, Max: 5 * time.Second}
}

// EventIDOf reads the top-level "id" of a payload that may not be a valid Stripe event, for the
// dead letter's event_id; "" when there is none.
func EventIDOf(raw []byte) string {
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
