package subscription_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/subscription"
)

// generator writes plausible random histories: subscriptions that go through Stripe's lifecycles
// (checkout, trials, renewals, failed and recovered payments, dunning, upgrades, pauses,
// cancellations), customer metadata changes, checkouts, entitlement summaries and invoice noise,
// with many events sharing a second.
type generator struct {
	t testing.TB
	r *rand.Rand
	h *history
}

// prices are the items a generated subscription picks from.
func prices() []item {
	return []item{
		proItem(), teamItem(),
		{id: "si_Basic", price: "price_1BasicMonthly", product: "prod_QkBasic", amount: 900},
		{id: "si_Yearly", price: "price_1ProYearly", product: "prod_QkPro", amount: 19000},
	}
}

// dt is the time to the next event of an object: often the same second, as Stripe's bursts are.
func (g *generator) dt() int64 {
	switch n := g.r.IntN(100); {
	case n < 45:
		return 0
	case n < 70:
		return 1 + g.r.Int64N(3)
	case n < 90:
		return 3600 + g.r.Int64N(3*day)
	default:
		return month
	}
}

func (g *generator) noise(at int64, s sub) {
	if g.r.IntN(3) == 0 {
		types := []string{"invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_failed", "invoice.upcoming"}
		g.h.invoice(g.t, at, types[g.r.IntN(len(types))], s.latestInvoice, s.id)
	}
}

// lifecycle emits one subscription's events from start and returns the time of its last one.
func (g *generator) lifecycle(id string, start int64) int64 {
	r, h := g.r, g.h
	it := prices()[r.IntN(len(prices()))]
	it.id = "si_" + id[4:]
	it.quantity = 1 + r.Int64N(5) // seats
	s := sub{id: id, items: []item{it}, created: start, periodStart: start, periodEnd: start + month,
		latestInvoice: "in_" + id[4:] + "_0", priceAsID: r.IntN(10) == 0, productExpanded: r.IntN(5) == 0}
	invoices := 0
	newInvoice := func() { invoices++; s.latestInvoice = fmt.Sprintf("in_%s_%d", id[4:], invoices) }
	switch r.IntN(3) {
	case 0:
		s.status = "incomplete"
	case 1:
		s.status, s.trialStart, s.trialEnd = "trialing", start, start+14*day
	default:
		s.status = "active"
	}
	now := start
	h.created(now, s)
	for range r.IntN(12) {
		now += g.dt()
		g.noise(now, s)
		switch s.status {
		case "incomplete":
			if r.IntN(3) == 0 {
				s.status, s.endedAt = "incomplete_expired", now
				h.updated(now, s)
				return now
			}
			s.status = "active"
			h.updated(now, s)
		case "trialing":
			switch r.IntN(3) {
			case 0:
				s.status = "paused"
				h.updated(now, s)
				h.subscription(now, "customer.subscription.paused", s)
			default:
				s.status, s.periodStart, s.periodEnd = "active", now, now+month
				newInvoice()
				h.updated(now, s)
			}
		case "active":
			switch r.IntN(8) {
			case 0:
				s.periodStart, s.periodEnd = s.periodEnd, s.periodEnd+month
				newInvoice()
				h.updated(now, s)
			case 1:
				s.status = "past_due"
				h.updated(now, s)
			case 2:
				s.cancelAtPeriodEnd = !s.cancelAtPeriodEnd
				s.cancelAt, s.canceledAt = 0, 0
				if s.cancelAtPeriodEnd {
					s.cancelAt, s.canceledAt = s.periodEnd, now
				}
				h.updated(now, s)
			case 3:
				next := prices()[r.IntN(len(prices()))]
				next.id, next.quantity = s.items[0].id, 1+r.Int64N(5) // a plan or seat change
				s.items = []item{next}
				h.updated(now, s)
			case 4:
				if s.pause == nil {
					s.pause = &pause{behavior: "void", resumesAt: now + month}
				} else {
					s.pause = nil
				}
				h.updated(now, s)
			case 5:
				s.metadata = map[string]string{"note": fmt.Sprint(r.IntN(1000))} // changes nothing tracked
				h.updated(now, s)
			case 6:
				h.subscription(now, "customer.subscription.trial_will_end", s)
			default:
				s.status, s.endedAt, s.canceledAt = "canceled", now, now
				h.deleted(now, s)
				return now
			}
		case "past_due", "unpaid":
			switch r.IntN(4) {
			case 0:
				s.status = "unpaid"
				h.updated(now, s)
			case 1:
				s.status, s.endedAt = "canceled", now
				h.deleted(now, s)
				return now
			default:
				s.status = "active"
				h.updated(now, s)
			}
		case "paused":
			if r.IntN(4) == 0 {
				s.status, s.endedAt = "canceled", now
				h.deleted(now, s)
				return now
			}
			s.status, s.periodStart, s.periodEnd = "active", now, now+month
			h.updated(now, s)
			h.subscription(now, "customer.subscription.resumed", s)
		}
	}
	return now
}

func generate(t testing.TB, seed uint64, customer string) *history {
	r := rand.New(rand.NewPCG(seed, 0x7011a7e))
	apis := []string{apiOld, apiV2024, apiBasil, apiClover, apiEndive}
	g := &generator{t: t, r: r, h: newHistory(t, customer, apis[r.IntN(len(apis))])}
	base := t0 + r.Int64N(1_000_000)
	if r.IntN(10) < 8 {
		g.h.customerCreated(base, map[string]string{"user_id": fmt.Sprintf("u_%d", r.IntN(5))})
	}
	end := base
	for i := range 1 + r.IntN(3) {
		end = max(end, g.lifecycle(fmt.Sprintf("sub_1Gen%d%c", seed, 'a'+i), base+r.Int64N(2)*g.dt()))
	}
	at := base
	for range r.IntN(4) {
		at += g.dt()
		g.h.customerUpdated(at, map[string]string{"user_id": fmt.Sprintf("u_%d", r.IntN(5)), "x": fmt.Sprint(r.IntN(2))})
	}
	at = base
	for i := range r.IntN(3) {
		at += 1 + g.dt() // checkouts of different users never share a second
		ref := ""
		if r.IntN(3) > 0 {
			ref = fmt.Sprintf("u_co%d", r.IntN(5))
		}
		g.h.checkout(t, at, "checkout.session.completed", fmt.Sprintf("cs_test_Gen%d_%d", seed, i), ref, "", "subscription")
	}
	at = base
	for range r.IntN(4) {
		at += g.dt()
		keys := []string{"api", "export", "sso", "journeys"}
		r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		g.h.entitlementSummary(at, keys[:r.IntN(len(keys))]...)
	}
	if r.IntN(8) == 0 {
		g.h.customerDeleted(max(end, at) + r.Int64N(2))
	}
	return g.h
}

// deliver returns events as Stripe might deliver them: in any order, some more than once.
func deliver(r *rand.Rand, events []subscription.Event) []subscription.Event {
	out := slices.Clone(events)
	for _, e := range events {
		if r.IntN(3) == 0 {
			out = append(out, e)
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// limitRules are rules with a PLANS_FILE that gives features and limits to the generator's prices
// (seats by quantity, projects fixed, by price and by product), so that the property tests cover
// the limits.
func limitRules() subscription.Rules {
	rules := subscription.DefaultRules()
	rules.Plans = map[string][]string{proItem().price: {"pro"}, "prod_QkTeam": {"team"}, "price_1BasicMonthly": {}}
	rules.Limits = map[string]map[string]subscription.Limit{
		proItem().price:       {"projects": {Value: 10}, "seats": {PerQuantity: true}},
		"prod_QkTeam":         {"projects": {Value: 50}, "seats": {PerQuantity: true}},
		"price_1BasicMonthly": {"projects": {Value: 1}},
	}
	return rules
}

// TestDeriveAnyDelivery checks the property the contract promises: whatever the order and the
// number of times events are delivered, the derived state is the same.
func TestDeriveAnyDelivery(t *testing.T) {
	t.Parallel()
	histories, deliveries := 200, 10
	if testing.Short() {
		histories = 50
	}
	for seed := range uint64(histories) {
		h := generate(t, seed, cus)
		events := decodeAll(t, h.raws)
		rules := limitRules()
		want := subscription.Derive(cus, events, rules)
		wantEnt := want.Entitlement(rules)
		ordered := slices.Clone(events)
		subscription.Order(ordered)
		r := rand.New(rand.NewPCG(seed, 2))
		for range deliveries {
			delivered := deliver(r, events)
			got := subscription.Derive(cus, delivered, rules)
			require.Equal(t, want, got, "seed %d", seed)
			require.Equal(t, wantEnt, got.Entitlement(rules), "seed %d: limits and features", seed)
			unique := slices.Clone(events)
			r.Shuffle(len(unique), func(i, j int) { unique[i], unique[j] = unique[j], unique[i] })
			subscription.Order(unique)
			require.Equal(t, ids(ordered), ids(unique), "seed %d", seed)
		}
	}
}

// TestDeriveMatchesCreationOrder checks that the same-second tie-break recovers the order Stripe
// created events in: the derived state equals the state of each object's last event as generated.
func TestDeriveMatchesCreationOrder(t *testing.T) {
	t.Parallel()
	histories := 400
	if testing.Short() {
		histories = 100
	}
	for seed := range uint64(histories) {
		h := generate(t, seed, cus)
		events := decodeAll(t, h.raws)
		// Each object's last event in creation order (h.raws is in creation order per object).
		last := map[string]subscription.Event{}
		for _, e := range events {
			switch {
			case e.Subscription != nil:
				last["sub/"+e.Subscription.ID] = e
			case e.Customer != nil:
				last["customer"] = e
			case e.Checkout != nil && e.Checkout.ClientReferenceID != "":
				last["checkout"] = e
			case e.EntitlementSummary != nil:
				last["summary"] = e
			}
		}
		var finals []subscription.Event
		for _, e := range last {
			finals = append(finals, e)
		}
		rules := subscription.DefaultRules()
		got := subscription.Derive(cus, events, rules)
		want := subscription.Derive(cus, finals, rules)
		got.LastEventID, got.LastEventCreated = "", 0
		want.LastEventID, want.LastEventCreated = "", 0
		require.Equal(t, want, got, "seed %d", seed)
	}
}
