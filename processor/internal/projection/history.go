package projection

import (
	"bytes"
	"container/list"
	"context"
	"runtime"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// DefaultEventCacheSize bounds the memory of the decoded events serve keeps, in bytes as
// estimated by decodedSize: 64 MiB. Since checkpoints a batch decodes only the events
// after its customers' checkpoints, so the cache mostly spares re-reading the same-second tails
// and the events after the rung a late delivery resumes from.
const DefaultEventCacheSize = 64 << 20

// eventCache keeps decoded stored events by event id, least recently used out first. An entry
// never goes stale: the store keeps the first copy of an event id forever and Decode is pure, so
// the decoded facts of an id are the same for the life of the process. It exists because
// re-deriving a customer means reading its whole history, and reading and scanning a Stripe
// payload (2-8 KB of JSON) costs far more than loading its id, deriving and writing together
// (a 1,000-event history: ~25 ms cold, ~2.5 ms cached); with the cache a batch parses only the
// events it has not seen. A nil *eventCache caches nothing.
//
// The bound is in bytes, not entries: a decoded subscription event with many prices is ten times
// an invoice event, and a bound in entries let one long history fill hundreds of megabytes.
type eventCache struct {
	mu    sync.Mutex
	max   int // bytes, as decodedSize estimates them
	size  int
	order *list.List // of decoded, front is the most recently used
	byID  map[string]*list.Element
}

// decoded is one stored event as the derivation sees it. ok is false for an event the current
// code cannot read (it is left out of derivations and reported once).
type decoded struct {
	id    string
	event subscription.Event
	ok    bool
}

// NewEventCache returns a cache of at most maxBytes of decoded events (decodedSize).
func NewEventCache(maxBytes int) *eventCache {
	return &eventCache{max: maxBytes, order: list.New(), byID: make(map[string]*list.Element)}
}

// decodedSize estimates the heap a cached decoded event holds: the entry, list element and map
// slot overhead, the Event struct and its objects, and their strings. It errs high rather than
// low (string headers and map buckets are counted at their full size).
func decodedSize(d decoded) int {
	const (
		entry  = 48 + 16 + 48 + 96 // map slot, string header, list.Element, decoded without event
		event  = 112               // subscription.Event
		sub    = 360               // subscription.SubscriptionObject
		object = 64                // customer, checkout or summary object
		str    = 16                // a string header
	)
	e := &d.event
	n := entry + event + len(d.id) + len(e.ID) + len(e.Type) + len(e.CustomerID)
	strs := func(ss []string) {
		for _, s := range ss {
			n += str + len(s)
		}
	}
	if o := e.Subscription; o != nil {
		// twice: the object and, for most updates, the prior state it links from
		n += 2 * (sub + len(o.ID) + len(o.CustomerID) + len(o.Status) + len(o.PauseBehavior))
		strs(o.PriceIDs)
		strs(o.ProductIDs)
		strs(o.PriceIDs)
		strs(o.ProductIDs)
	}
	if o := e.Customer; o != nil {
		n += 2 * (object + len(o.ID))
		for k, v := range o.Metadata {
			n += 2 * (2*str + len(k) + len(v) + 16)
		}
	}
	if o := e.Checkout; o != nil {
		n += object + len(o.ID) + len(o.ClientReferenceID) + len(o.SubscriptionID)
	}
	if o := e.EntitlementSummary; o != nil {
		n += 2 * object
		strs(o.LookupKeys)
		strs(o.LookupKeys)
	}
	return n
}

func (c *eventCache) Get(id string) (decoded, bool) {
	if c == nil {
		return decoded{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return decoded{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(decoded), true //nolint:forcetypeassert // only decoded values are stored
}

func (c *eventCache) Put(d decoded) {
	if c == nil || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[d.id]; ok {
		c.order.MoveToFront(e)
		return
	}
	size := decodedSize(d)
	if size > c.max {
		return
	}
	c.byID[d.id] = c.order.PushFront(d)
	c.size += size
	for c.size > c.max {
		old := c.order.Remove(c.order.Back()).(decoded) //nolint:forcetypeassert // only decoded values are stored
		delete(c.byID, old.id)
		c.size -= decodedSize(old)
	}
}

// history is one customer's stored events, decoded, in no particular order (Derive orders them).
type history struct {
	events  []subscription.Event
	skipped int // stored events the current code cannot read
}

func (h *history) add(d decoded) {
	if d.ok {
		h.events = append(h.events, d.event)
	} else {
		h.skipped++
	}
}

// loadHistories reads the stored histories of the customers from the event store, each after
// its bound in after (the customer's checkpoint, or math.MinInt64 for the whole history): the
// envelopes of those events, then the payloads of those not in the cache whose object the derivation
// reads. A payload identical to an
// event of this batch (fresh) reuses the batch's decoding; any other is parsed and decoded. The
// newly decoded events come back too, for the cache once the transaction has committed. Only
// customers with stored events are in the result. It reads through tx, after the customers'
// locks are taken, so it sees every event committed so far.
//
// A stored event that no longer parses or decodes (the store only takes events that did, so only
// a stricter version of the code can meet one) is left out and reported: failing the customer
// instead would block every later event of the customer.
func (p *Projector) loadHistories(ctx context.Context, tx pgx.Tx, customers []scope.Key, after []int64, fresh map[string]Admitted) (map[scope.Key]*history, []decoded, error) {
	out := make(map[scope.Key]*history, len(customers))
	var missing []string
	var envelopes []decoded
	err := eventstore.ForEachEnvelopeAfter(ctx, tx, customers, after, func(e eventstore.Envelope) error {
		h := out[e.Customer]
		if h == nil {
			h = &history{}
			out[e.Customer] = h
		}
		if d, ok := p.Cache.Get(e.ID); ok {
			h.add(d)
		} else if !subscription.ReadsObject(e.Type) {
			// Invoices, charges, payment intents...: the derivation sees their envelope only,
			// which the row has, so their payloads (most of a real history) are not read.
			d := decoded{id: e.ID, event: subscription.Event{ID: e.ID, Type: e.Type, Created: e.Created, CustomerID: e.Customer.ID}, ok: true}
			h.add(d)
			envelopes = append(envelopes, d)
		} else {
			missing = append(missing, e.ID)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(missing) == 0 {
		return out, envelopes, nil
	}
	// Payloads are read in pages, so that a scratch derivation of a long history (a late event,
	// a replay) holds at most a page of raw payloads at a time, besides the decoded events.
	decodedNow := make([]decoded, 0, len(missing))
	for page := range slices.Chunk(missing, payloadPage) {
		stored, err := eventstore.Payloads(ctx, tx, page)
		if err != nil {
			return nil, nil, err
		}
		decodedPage := make([]decoded, len(stored))
		parallel(len(stored), func(i int) {
			r := stored[i]
			// The store keeps the first copy of an id: the batch's copy stands for it only when the
			// bytes are the same.
			if a, ok := fresh[r.ID]; ok && bytes.Equal(a.Event.Raw, r.Payload) {
				decodedPage[i] = decoded{id: r.ID, event: a.decoded, ok: true}
			} else {
				decodedPage[i] = p.decodeStored(r.Customer, r.ID, r.Payload)
			}
		})
		for i, r := range stored {
			out[r.Customer].add(decodedPage[i])
		}
		decodedNow = append(decodedNow, decodedPage...)
	}
	return out, append(decodedNow, envelopes...), nil
}

// payloadPage is how many payloads loadHistories reads per statement: at 2-8 KB each, at most
// ~8 MB of raw JSON in memory at once.
const payloadPage = 1000

// parallel calls fn(i) for every i in [0, n), spread over the available CPUs: decoding a long
// history is CPU work that Postgres is not waiting on.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/64+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// decodeStored parses and decodes a stored payload (validating costs nothing extra: the envelope
// is read in the same pass). The result keeps
// no reference to payload (Decode copies what it reads), so the cache holds facts, not payloads.
func (p *Projector) decodeStored(customer scope.Key, id string, payload []byte) decoded {
	d := decoded{id: id}
	ev, err := stripeevent.Parse(payload)
	if err == nil {
		d.event, err = subscription.Decode(ev)
	}
	if err != nil {
		p.Metrics.undecodable.Inc()
		p.Log.Error("stored event cannot be read by this version; derived without it", "customer", customer.ID, "scope", customer.Scope.String(), "event", id, "error", err)
		return d
	}
	d.ok = true
	return d
}
