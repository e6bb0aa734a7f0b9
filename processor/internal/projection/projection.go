// Package projection is the one write path of the processor: admit an event (the poison
// rules), append it to the event store and re-derive its customer's and users' read model in
// one transaction, under advisory locks taken in one order. It keeps the history cache, the
// checkpoint ladders and the read-your-writes marks.
package projection

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/processor/internal/notify"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/pkg/outbox"
	"github.com/tollgate/tollgate/pkg/repair"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// txBeginner starts transactions (a *pgxpool.Pool).
type txBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Projector is the one code path that changes the event store and the read model. The consumer
// (a batch of new events), replay (customers, no events) and dlq redrive (one event) all go
// through apply, so they take the same locks in the same order and cannot disagree.
type Projector struct {
	DB      txBeginner
	Rules   subscription.Rules
	Cache   *eventCache // nil: decode every history from its payloads
	Log     *slog.Logger
	Metrics *Metrics
	Notify  *notify.Notifier // nil records no notifications
	// FullDerive turns checkpoints off: every customer is derived from its whole
	// history and no checkpoint is read or written. The benchmark's baseline.
	FullDerive bool
}

// Input is what one apply works on.
type Input struct {
	// Events are appended to the event store (ids already stored are ignored) and their
	// customers re-derived.
	Events []Admitted
	// Customers are re-derived as well (replay), each in its scope.
	Customers []scope.Key
	// RefreshAllUsers rebuilds the user rows of every re-derived customer, not only of those
	// whose row changed (replay uses it to repair the user table too).
	RefreshAllUsers bool
	// FromScratch derives every customer from its whole history, ignoring stored checkpoints,
	// and rewrites them (replay: a rules or code change must not trust the old fold).
	FromScratch bool
	// InTx, when set, runs inside the transaction after the append (redrive deletes the dead
	// letter there, so the event leaves dead_letters exactly when it is applied).
	InTx func(ctx context.Context, tx pgx.Tx) error
}

// Result is what one apply did.
type Result struct {
	Appended int64 // events new to the store
	Derived  int   // customers re-derived (with a stored history)
	Changed  int   // customer rows written because their derivation changed
	Users    int   // user rows refreshed
	Skipped  int   // stored events skipped because the current code cannot decode them
}

// Apply runs one transaction: append the events, lock the affected customers, re-derive each
// from its whole stored history, write the customer rows that changed, lock their users and
// rebuild the user rows. Everything commits together or not at all, so a failed apply can be
// retried as often as needed; applying the same input twice changes nothing the second time.
//
// Everything is per scope (an event's livemode and account): an event re-derives its customer in
// its own scope only, from that scope's history, and refreshes that scope's users, so an event of
// one scope never changes another's answer.
//
// Lock order, the same for every caller so that concurrent applies (several processor
// instances, a replay while the consumer runs) never deadlock on each other: customer advisory
// locks in scope.Compare order, then user advisory locks in that order, each released at
// commit. Events with no customer are only stored.
func (p *Projector) Apply(ctx context.Context, in Input) (Result, error) {
	events := uniqueEvents(in.Events)
	customers := customersOf(events, in.Customers)
	raw := make([]stripeevent.Event, len(events))
	fresh := make(map[string]Admitted, len(events))
	for i, a := range events {
		raw[i] = a.Event
		fresh[a.Event.ID] = a
	}
	var res Result
	var decodedNow []decoded
	var notes []outbox.Change
	// WARNING: READ COMMITTED is required, not just allowed: each statement below must see what
	// other transactions committed while this one waited for a lock. Under REPEATABLE READ a
	// transaction that waited for a customer's lock would derive from a snapshot missing the
	// events the lock holder just committed, and overwrite its newer row with an older one.
	err := pgx.BeginTxFunc(ctx, p.DB, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		res, decodedNow, notes = Result{}, nil, nil
		n, err := eventstore.Append(ctx, tx, raw)
		if err != nil {
			return err
		}
		res.Appended = n
		// In the same transaction as the events: a repair an event asks for is never lost.
		if err := repair.Enqueue(ctx, tx, repairsOf(raw)); err != nil {
			return err
		}
		// Read your writes: what ?wait_for= waits for, in the transaction that applies it.
		if err := entitlement.RecordMarks(ctx, tx, marksOf(events)); err != nil {
			return err
		}
		if in.InTx != nil {
			if err := in.InTx(ctx, tx); err != nil {
				return err
			}
		}
		if len(customers) == 0 {
			return nil
		}
		start := time.Now()
		// WARNING: lock first, then read the histories. A concurrent transaction that appended
		// events of the same customer either committed before we got the lock (we read its
		// events) or takes the lock after us (it re-derives with ours). Reading before locking
		// lets the last writer derive from a history missing the other's events.
		if err := lockKeys(ctx, tx, "customer:", customers); err != nil {
			return err
		}
		// Checkpoints: under the same locks, the ones the last holder wrote; a customer
		// resumes from the newest one before its oldest new event (the newest of all, or an
		// older rung of its ladder for a late delivery or a backfill), or from scratch when none
		// is before it, and its ladder is rewritten from there.
		ladders, after, err := p.loadLadders(ctx, tx, customers, events, in.FromScratch)
		if err != nil {
			return err
		}
		var histories map[scope.Key]*history
		histories, decodedNow, err = p.loadHistories(ctx, tx, customers, after, fresh)
		if err != nil {
			return err
		}
		old, err := entitlement.LoadCustomers(ctx, tx, customers)
		if err != nil {
			return err
		}
		var rows []entitlement.Customer
		var saves []entitlement.LadderUpdate
		users := make(map[scope.Key]struct{})
		for _, id := range customers {
			h := histories[id]
			ladder := ladders[id]
			if h == nil && ladder.From == nil {
				continue // replay of a customer without events: nothing to derive
			}
			if h == nil {
				h = &history{} // nothing after the checkpoint (a duplicate delivery)
			}
			row, cps, err := p.derive(id, ladder.From, h.events)
			if err != nil {
				return err
			}
			if u, ok := ladderUpdate(id, ladder, cps); ok && !p.FullDerive {
				saves = append(saves, u)
			}
			res.Derived++
			res.Skipped += h.skipped
			prev, existed := old[id]
			changed := !existed || !prev.Same(row)
			if existed && prev.UserID != "" && (changed || in.RefreshAllUsers) {
				users[id.Of(prev.UserID)] = struct{}{} // the user the customer leaves, or keeps
			}
			if row.UserID != "" && (changed || in.RefreshAllUsers) {
				users[id.Of(row.UserID)] = struct{}{}
			}
			if changed {
				rows = append(rows, row)
			}
		}
		if err := entitlement.SaveCustomers(ctx, tx, rows); err != nil {
			return err
		}
		// Under the customer locks, with the rows they were derived with.
		if err := entitlement.SaveLadders(ctx, tx, saves); err != nil {
			return err
		}
		res.Changed = len(rows)
		userIDs := sortedKeys(users)
		// WARNING: the customer rows are saved before the user locks are taken, and the user
		// rows are rebuilt after: whoever takes a user's lock last reads every customer row the
		// others committed and writes the complete union. Refreshing before locking, or saving
		// after, lets two customers of one user each write a union missing the other.
		if notes, err = p.RefreshUsers(ctx, tx, userIDs); err != nil {
			return err
		}
		res.Users = len(userIDs)
		p.Metrics.replay.Observe(time.Since(start).Seconds())
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	p.Notify.Committed(notes) // NATS, and wake the delivery
	// Cached only now that the events they were read from are committed.
	for _, d := range decodedNow {
		p.Cache.Put(d)
	}
	p.Metrics.changed.Add(float64(res.Changed))
	return res, nil
}

// derive folds one customer's decoded history into its read-model row: events are the events
// after cp, or the whole history when cp is nil, and cps are the new checkpoints of its ladder
// (subscription.Ladder.Resume; none with fullDerive). A panic (a bug some history triggers) is
// returned as an error wrapping errDerivePanic.
func (p *Projector) derive(customer scope.Key, cp *subscription.Checkpoint, events []subscription.Event) (row entitlement.Customer, cps []subscription.Checkpoint, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: customer %s (%s): %v", ErrDerivePanic, customer.ID, customer.Scope, r)
		}
	}()
	start := time.Now()
	var state subscription.State
	if p.FullDerive {
		state = subscription.Derive(customer.ID, events, p.Rules)
	} else if state, cps, err = (subscription.Ladder{}).Resume(customer.ID, cp, events, p.Rules); err != nil {
		// loadLadders only resumes from valid checkpoints older than every tail event.
		return entitlement.Customer{}, nil, fmt.Errorf("derive customer %s (%s): %w", customer.ID, customer.Scope, err)
	}
	row = entitlement.FromState(customer.Scope, state, p.Rules)
	p.Metrics.derive.Observe(time.Since(start).Seconds())
	p.Metrics.DerivedEvents.Add(float64(len(events)))
	return row, cps, nil
}

// ladderUpdate is what a derivation from ladder.From (nil: from scratch) that returned cps
// changes of the customer's stored checkpoints: those after From go (they no longer hold every
// event up to their T, or are rewritten), cps come in, and the rungs up to From plus cps are
// thinned to the ladder (subscription.Ladder.Thin). ok is false when nothing changes (nothing
// after the newest checkpoint: a duplicate delivery).
func ladderUpdate(id scope.Key, ladder entitlement.Ladder, cps []subscription.Checkpoint) (u entitlement.LadderUpdate, ok bool) {
	u = entitlement.LadderUpdate{Customer: id, After: math.MinInt64}
	var rungs []subscription.Rung
	if ladder.From != nil {
		if len(cps) == 0 {
			return u, false
		}
		u.After = ladder.From.Created
		for _, r := range ladder.Rungs {
			if r.Created <= u.After {
				rungs = append(rungs, r)
			}
		}
	}
	older := len(rungs)
	for i := range cps {
		rungs = append(rungs, subscription.RungOf(&cps[i]))
	}
	keep := subscription.Ladder{}.Thin(rungs)
	for i, r := range rungs {
		switch {
		case i < older && !keep[i]:
			u.Drop = append(u.Drop, r.Created)
		case i >= older && keep[i]:
			u.Save = append(u.Save, cps[i-older])
		}
	}
	return u, true
}

// loadLadders reads the customers' stored checkpoints and says, for each customer in order,
// after which created its events must be loaded: the T of the newest checkpoint before the
// customer's oldest event in this batch (the newest of all for a customer without one, e.g. a
// replay), or math.MinInt64 (the whole history) when it has none before it, its checkpoint is of
// another fold or rules, or scratch is asked for. Ladders without a From are derived from
// scratch. A resume from an older rung counts in checkpointRungResumes, a customer whose
// checkpoints are all too new in checkpointMisses.
func (p *Projector) loadLadders(ctx context.Context, tx pgx.Tx, customers []scope.Key, events []Admitted, scratch bool) (map[scope.Key]entitlement.Ladder, []int64, error) {
	after := make([]int64, len(customers))
	for i := range after {
		after[i] = math.MinInt64
	}
	if scratch || p.FullDerive {
		return nil, after, nil
	}
	oldest := make(map[scope.Key]int64, len(events))
	for _, a := range events {
		if a.Event.CustomerID == "" {
			continue
		}
		k := ScopeOf(a.Event).Of(a.Event.CustomerID)
		if o, ok := oldest[k]; !ok || a.Event.Created < o {
			oldest[k] = a.Event.Created
		}
	}
	before := make([]int64, len(customers))
	for i, k := range customers {
		before[i] = math.MaxInt64
		if o, ok := oldest[k]; ok {
			before[i] = o
		}
	}
	ladders, err := entitlement.LoadLadders(ctx, tx, customers, before, subscription.CheckpointVersion)
	if err != nil {
		return nil, nil, err
	}
	key := p.Rules.UserIDMetadataKey
	if key == "" {
		key = subscription.DefaultUserIDMetadataKey
	}
	for i, k := range customers {
		l, ok := ladders[k]
		switch {
		case !ok:
			continue
		case l.From == nil:
			p.Metrics.CheckpointMisses.Inc() // a late event before every checkpoint: from scratch
		case l.From.UserIDMetadataKey != key:
			l.From = nil
		default:
			if !l.Newest() {
				p.Metrics.CheckpointRungResumes.Inc()
			}
			after[i] = l.From.Created
		}
		ladders[k] = l
	}
	return ladders, after, nil
}

// RefreshUsers rewrites the read-model rows of users (sorted, scope.Compare) in tx: it takes
// their locks, rebuilds each from its customers' rows and the grants active at the transaction's
// time (grant.RefreshUsers), and records the notifications of the answers that changed. Apply
// calls it after saving the customer rows; the grant use cases (operate) after giving, revoking
// or expiring a grant, so that a grant changes an answer exactly as an event does. Publish the
// changes it returns with p.Notify.Committed once tx committed.
func (p *Projector) RefreshUsers(ctx context.Context, tx pgx.Tx, users []scope.Key) ([]outbox.Change, error) {
	if err := lockKeys(ctx, tx, "user:", users); err != nil {
		return nil, err
	}
	rows, err := grant.RefreshUsers(ctx, tx, users)
	if err != nil {
		return nil, err
	}
	// Notifications are recorded in this transaction, under the user locks, from the user rows
	// just rebuilt.
	return p.Notify.Record(ctx, tx, users, rows)
}

// lockKeys takes a transaction-scoped advisory lock on prefix+key for each key, in the order of
// keys, which must be sorted (scope.Compare). The function scan yields the array's elements in order and each
// row's lock is taken before the next row is read, so one statement locks them all in order.
func lockKeys(ctx context.Context, tx pgx.Tx, prefix string, keys []scope.Key) error {
	if len(keys) == 0 {
		return nil
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.String()
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1 || id, 0)) FROM unnest($2::text[]) AS id`,
		prefix, ids); err != nil {
		return fmt.Errorf("lock %d %s keys: %w", len(ids), prefix, err)
	}
	return nil
}

// uniqueEvents returns the events sorted by id without repeated ids. Concurrent appends insert
// in the same (id) order, so two transactions cannot wait on each other's uncommitted rows in a
// cycle.
func uniqueEvents(events []Admitted) []Admitted {
	if len(events) < 2 {
		return events
	}
	out := slices.Clone(events)
	slices.SortStableFunc(out, func(a, b Admitted) int { return strings.Compare(a.Event.ID, b.Event.ID) })
	return slices.CompactFunc(out, func(a, b Admitted) bool { return a.Event.ID == b.Event.ID })
}

// customersOf is the sorted set of the events' customers, each in its event's scope, and the
// extra keys.
func customersOf(events []Admitted, extra []scope.Key) []scope.Key {
	set := make(map[scope.Key]struct{}, len(events)+len(extra))
	for _, e := range events {
		if e.Event.CustomerID != "" {
			set[ScopeOf(e.Event).Of(e.Event.CustomerID)] = struct{}{}
		}
	}
	for _, k := range extra {
		if k.ID != "" {
			set[k] = struct{}{}
		}
	}
	return sortedKeys(set)
}

// ScopeOf is the scope an event belongs to: its mode and its Connect account.
func ScopeOf(e stripeevent.Event) scope.Scope {
	return scope.Scope{Livemode: e.Livemode, Account: e.Account}
}

func sortedKeys(set map[scope.Key]struct{}) []scope.Key {
	out := make([]scope.Key, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.SortFunc(out, scope.Compare)
	return out
}

// repairsOf are the repairs events ask for (repair.Needed).
func repairsOf(events []stripeevent.Event) []repair.Repair {
	var out []repair.Repair
	for _, ev := range events {
		if r, ok := repair.Needed(ev); ok {
			out = append(out, r)
		}
	}
	return out
}
