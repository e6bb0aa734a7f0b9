package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// crashPlan is the traffic of one crash test: the customers' event histories, and the order in
// which copies of the events are sent (shuffled across customers, some events more than once, as
// Stripe retries).
type crashPlan struct {
	events    map[string]scenario.Event // by event id
	customers map[string][]string       // customer id -> its event ids
	users     map[string][]string       // user id -> its customer ids, sorted
	sends     []string                  // event ids in sending order, with repeats
}

// newCrashPlan builds n customers' lifecycles: created, checkout, subscription created
// (incomplete) and active, one to four status changes (some within the same second, so the
// derivation's tie-break matters), and for some a cancellation. Every fourth customer belongs to
// the user of the one before, so some users have two customers.
func newCrashPlan(rng *rand.Rand, prefix string, n int) *crashPlan {
	p := &crashPlan{events: map[string]scenario.Event{}, customers: map[string][]string{}, users: map[string][]string{}}
	base := time.Now().Add(-2 * time.Hour).Unix()
	var prev *scenario.Customer
	for k := range n {
		c := scenario.NewCustomer(prefix, k)
		if k%4 == 3 {
			c.UserID = prev.UserID
		}
		prev = c
		at := base + int64(k)*100
		evs := []scenario.Event{
			c.CustomerCreated(at),
			c.CheckoutCompleted(at + 1),
			c.SubscriptionEvent("customer.subscription.created", "incomplete", at+2, nil),
			c.SubscriptionEvent("customer.subscription.updated", "active", at+3, map[string]any{"status": "incomplete"}),
		}
		at += 3
		status := "active"
		for range 1 + rng.IntN(4) {
			next := status
			for next == status {
				next = []string{"active", "past_due", "unpaid", "trialing"}[rng.IntN(4)]
			}
			if rng.IntN(4) != 0 { // else the same second as the event before
				at++
			}
			evs = append(evs, c.SubscriptionEvent("customer.subscription.updated", next, at, map[string]any{"status": status}))
			status = next
		}
		if rng.IntN(3) == 0 {
			evs = append(evs, c.SubscriptionEvent("customer.subscription.deleted", "canceled", at+1, nil))
		}
		for _, ev := range evs {
			p.events[ev.ID] = ev
			p.customers[c.ID] = append(p.customers[c.ID], ev.ID)
			copies := 1
			if rng.IntN(3) == 0 {
				copies++
			}
			if rng.IntN(10) == 0 {
				copies++
			}
			for range copies {
				p.sends = append(p.sends, ev.ID)
			}
		}
		p.users[c.UserID] = append(p.users[c.UserID], c.ID)
	}
	rng.Shuffle(len(p.sends), func(i, j int) { p.sends[i], p.sends[j] = p.sends[j], p.sends[i] })
	return p
}

// expected derives every customer's read-model row from its full history with the processor's
// own code (stripeevent.Parse, subscription.Decode and Derive, entitlement.FromState) under the
// contract's default rules, which the stack runs with.
func (p *crashPlan) expected() (map[string]entitlement.Customer, error) {
	rules := subscription.DefaultRules()
	out := make(map[string]entitlement.Customer, len(p.customers))
	for cid, ids := range p.customers {
		history := make([]subscription.Event, 0, len(ids))
		var sc scope.Scope // the customer's scope: its events' (the plan's are all of one)
		for _, id := range ids {
			raw, err := stripeevent.Parse(p.events[id].Payload)
			if err != nil {
				return nil, fmt.Errorf("parse %s: %w", id, err)
			}
			sc = scope.Scope{Livemode: raw.Livemode, Account: raw.Account}
			ev, err := subscription.Decode(raw)
			if err != nil {
				return nil, fmt.Errorf("decode %s: %w", id, err)
			}
			history = append(history, ev)
		}
		out[cid] = entitlement.FromState(sc, subscription.Derive(cid, history, rules), rules)
	}
	return out, nil
}

// answerView is the query API's answer (GET /v1/.../entitlement) as this test compares it:
// the JSON fields, updated_at aside.
type answerView struct {
	UserID           *string                    `json:"user_id"`
	CustomerIDs      []string                   `json:"customer_ids"`
	Livemode         bool                       `json:"livemode"`
	Account          *string                    `json:"account"`
	Premium          bool                       `json:"premium"`
	Status           string                     `json:"status"`
	Features         []string                   `json:"features"`
	Subscriptions    []entitlement.Subscription `json:"subscriptions"`
	LastEventID      *string                    `json:"last_event_id"`
	LastEventCreated *time.Time                 `json:"last_event_created"`
	FailOpen         bool                       `json:"fail_open"`
}

// customerView is the query API's answer for a customer row (GET /v1/customers/{id}/entitlement).
func customerView(c entitlement.Customer) answerView {
	v := answerView{
		CustomerIDs: []string{c.CustomerID}, Livemode: c.Scope.Livemode, Account: account(c.Scope),
		Premium: c.Premium, Status: c.Status, Features: c.Features,
		Subscriptions: c.Subscriptions, LastEventID: &c.LastEventID, LastEventCreated: &c.LastEventCreated,
	}
	if c.UserID != "" {
		v.UserID = &c.UserID
	}
	return v
}

// userView is the query API's answer for a user's row (GET /v1/users/{id}/entitlement).
func userView(u entitlement.User) answerView {
	return answerView{
		UserID: &u.UserID, CustomerIDs: u.CustomerIDs, Livemode: u.Scope.Livemode, Account: account(u.Scope),
		Premium: u.Premium, Status: u.Status, Features: u.Features,
		Subscriptions: u.Subscriptions, LastEventID: &u.LastEventID, LastEventCreated: &u.LastEventCreated,
	}
}

// account is the answer's account field: null for the platform.
func account(sc scope.Scope) *string {
	if sc.Account == "" {
		return nil
	}
	return &sc.Account
}

// inScope is the query string that asks the query API about scope sc.
func inScope(sc scope.Scope) string {
	q := fmt.Sprintf("?livemode=%t", sc.Livemode)
	if sc.Account != "" {
		q += "&account=" + sc.Account
	}
	return q
}

// attempt is one webhook request of the traffic and how it ended.
type attempt struct {
	id         string
	url        string // the listener it went to
	start, end time.Time
	status     int  // 0 when no answer came
	duplicate  bool // the 200's "duplicate"
	written    bool // the request was on the wire before it ended
	err        error
}

// traffic sends a plan's webhooks at a steady pace to one or more listeners, each copy from its
// own goroutine, and like
// Stripe retries a copy (fresh signature, backoff up to a second) until it gets a 200 or
// sendDeadline passes. Every attempt is recorded.
type traffic struct {
	urls     []string // listeners: each attempt goes to one picked at random
	secret   string
	plan     *crashPlan
	every    time.Duration // between two sends
	client   *http.Client
	inFlight atomic.Int64 // requests on the wire without an answer yet
	sent     atomic.Int64 // copies started
	mu       sync.Mutex
	attempts []attempt
	accepted map[string]bool
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

// sendDeadline bounds the retries of one copy: far beyond any outage the tests cause.
const sendDeadline = 90 * time.Second

func newTraffic(urls []string, secret string, plan *crashPlan, every time.Duration) *traffic {
	return &traffic{
		urls: urls, secret: secret, plan: plan, every: every, accepted: map[string]bool{},
		client: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}},
	}
}

// start begins sending; stop (t.Cleanup) ends the retries early.
func (tr *traffic) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tr.cancel = cancel
	t.Cleanup(func() {
		cancel()
		tr.wg.Wait()
		tr.client.CloseIdleConnections()
	})
	tr.wg.Go(func() {
		tick := time.NewTicker(tr.every)
		defer tick.Stop()
		for _, id := range tr.plan.sends {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			tr.sent.Add(1)
			tr.wg.Go(func() { tr.deliver(ctx, id) })
		}
	})
}

// wait returns once every copy got its 200 or gave up, failing the test after timeout.
func (tr *traffic) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { tr.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("traffic still sending after %s: %d of %d copies started", timeout, tr.sent.Load(), len(tr.plan.sends))
	}
}

func (tr *traffic) deliver(ctx context.Context, id string) {
	start := time.Now()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		a := tr.post(ctx, id)
		tr.mu.Lock()
		tr.attempts = append(tr.attempts, a)
		if a.status == http.StatusOK {
			tr.accepted[id] = true
		}
		tr.mu.Unlock()
		if a.status == http.StatusOK || time.Since(start) > sendDeadline {
			return
		}
		timer := time.NewTimer(backoff + rand.N(backoff/2))
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		timer.Stop()
		backoff = min(2*backoff, time.Second)
	}
}

func (tr *traffic) post(ctx context.Context, id string) attempt {
	ev := tr.plan.events[id]
	a := attempt{id: id, start: time.Now()}
	var wrote atomic.Bool // whoever sets it first, WroteRequest or the end of Do, counts
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
		if !wrote.Swap(true) {
			tr.inFlight.Add(1)
		}
	}})
	a.url = tr.urls[rand.IntN(len(tr.urls))]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(ev.Payload))
	if err != nil {
		a.err, a.end = err, time.Now()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", scenario.Sign(ev.Payload, tr.secret))
	resp, err := tr.client.Do(req)
	if err == nil {
		var body struct {
			Duplicate bool `json:"duplicate"`
		}
		b, rerr := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		a.status, err = resp.StatusCode, rerr
		if a.status == http.StatusOK {
			if jerr := json.Unmarshal(b, &body); jerr != nil {
				err = fmt.Errorf("200 with body %q: %w", b, jerr)
			}
			a.duplicate = body.Duplicate
		}
	}
	a.err, a.end = err, time.Now()
	if wrote.Swap(true) {
		a.written = true
		tr.inFlight.Add(-1)
	}
	return a
}

// count is the number of attempts so far that match.
func (tr *traffic) count(match func(a attempt) bool) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, a := range tr.attempts {
		if match(a) {
			n++
		}
	}
	return n
}

// acceptedEvents is the number of distinct events that got a 200 so far.
func (tr *traffic) acceptedEvents() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.accepted)
}

// snapshot is a copy of the attempts so far.
func (tr *traffic) snapshot() []attempt {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.attempts)
}

// summary counts the attempts by outcome, for the test's log.
func (tr *traffic) summary() string {
	var ok, dup, unavailable, noAnswer, other int
	var slowest time.Duration
	for _, a := range tr.snapshot() {
		slowest = max(slowest, a.end.Sub(a.start))
		switch {
		case a.status == http.StatusOK && a.duplicate:
			dup++
		case a.status == http.StatusOK:
			ok++
		case a.status == http.StatusServiceUnavailable:
			unavailable++
		case a.status == 0:
			noAnswer++
		default:
			other++
		}
	}
	return fmt.Sprintf("%d events, %d copies: %d answered 200 new, %d 200 duplicate, %d 503, %d without answer, %d other; "+
		"slowest answer %s", len(tr.plan.events), len(tr.plan.sends), ok, dup, unavailable, noAnswer, other, slowest.Round(time.Millisecond))
}
