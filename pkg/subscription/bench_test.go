package subscription_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// longHistory writes a realistic history of at least n events for one customer: a checkout, then
// month after month of renewals with their invoice events (most of a real history), failed
// payments and recoveries, upgrades, metadata changes and entitlement summaries, many in the same
// second. With subscriptionsOnly every event is a customer.subscription.* event, the costliest to
// decode.
func longHistory(tb testing.TB, n int, subscriptionsOnly bool) [][]byte {
	tb.Helper()
	r := rand.New(rand.NewPCG(uint64(n), 99))
	h := newHistory(tb, cus, apiV2024)
	noise := func(at int64, typ string, s sub) {
		if !subscriptionsOnly {
			h.invoice(tb, at, typ, s.latestInvoice, s.id)
		}
	}
	at := t0
	if !subscriptionsOnly {
		h.customerCreated(at, nil)
	}
	s := proSub("sub_1Bench")
	s.status = "incomplete"
	h.created(at, s)
	noise(at, "invoice.created", s)
	noise(at, "invoice.finalized", s)
	noise(at+1, "invoice.paid", s)
	s.status = "active"
	h.updated(at+1, s)
	if !subscriptionsOnly {
		h.checkout(tb, at+2, "checkout.session.completed", "cs_test_Bench", "u_bench", s.id, "subscription")
		h.customerUpdated(at+2, map[string]string{"user_id": "u_bench"})
	}
	for months := 1; len(h.raws) < n; months++ {
		at = s.periodEnd
		noise(at-3*day, "invoice.upcoming", s)
		s.periodStart, s.periodEnd = s.periodEnd, s.periodEnd+month
		s.latestInvoice = fmt.Sprintf("in_Bench%d", months)
		noise(at, "invoice.created", s)
		h.updated(at, s)
		noise(at+3600, "invoice.finalized", s)
		if r.IntN(6) == 0 {
			noise(at+3600, "invoice.payment_failed", s)
			s.status = "past_due"
			h.updated(at+3600, s)
			at += 3 * day
		}
		noise(at+3600, "invoice.paid", s)
		noise(at+3600, "invoice.payment_succeeded", s)
		if s.status != "active" {
			s.status = "active"
			h.updated(at+3600, s)
		}
		switch r.IntN(10) {
		case 0:
			next := prices()[r.IntN(len(prices()))]
			next.id = s.items[0].id
			s.items = []item{next}
			h.updated(at+5*day, s)
			if !subscriptionsOnly {
				h.entitlementSummary(at+5*day, next.product)
			}
		case 1:
			if !subscriptionsOnly {
				h.customerUpdated(at+7*day, map[string]string{"user_id": "u_bench", "seats": fmt.Sprint(r.IntN(9))})
			}
		case 2:
			s.cancelAtPeriodEnd = !s.cancelAtPeriodEnd
			h.updated(at+9*day, s)
		}
	}
	return h.raws[:n]
}

func parseAll(tb testing.TB, raws [][]byte) []stripeevent.Event {
	tb.Helper()
	out := make([]stripeevent.Event, len(raws))
	for i, raw := range raws {
		pe, err := stripeevent.Parse(raw)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = pe
	}
	return out
}

// arrival shuffles a few neighbours, as deliveries arrive slightly out of order.
func arrival(events []subscription.Event) []subscription.Event {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 1; i < len(events); i++ {
		if r.IntN(10) == 0 {
			events[i-1], events[i] = events[i], events[i-1]
		}
	}
	return events
}

func reportEvents(b *testing.B, perOp int) {
	b.ReportMetric(float64(perOp)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkDerive(b *testing.B) {
	rules := subscription.DefaultRules()
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("history=%d", n), func(b *testing.B) {
			events := arrival(decodeAll(b, longHistory(b, n, false)))
			b.ReportAllocs()
			for b.Loop() {
				subscription.Derive(cus, events, rules)
			}
			reportEvents(b, n)
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	h := newHistory(b, cus, apiV2024)
	s := proSub("sub_1Bench")
	h.created(t0, s)
	s.status = "past_due"
	h.updated(t0+1, s)
	basil := newHistory(b, cus, apiBasil)
	basil.created(t0, s)
	s.status = "active"
	basil.updated(t0+1, s)
	h.customerUpdated(t0, map[string]string{"user_id": "u_1"})
	h.checkout(b, t0, "checkout.session.completed", "cs_test_1", "u_1", s.id, "subscription")
	h.entitlementSummary(t0, "a", "b")
	h.invoice(b, t0, "invoice.paid", "in_1", s.id)
	cases := []struct {
		name string
		raw  []byte
	}{
		{"type=customer.subscription.created", h.raws[0]},
		{"type=customer.subscription.updated", h.raws[1]},
		{"type=customer.subscription.updated/api=basil", basil.raws[1]},
		{"type=customer.updated", h.raws[2]},
		{"type=checkout.session.completed", h.raws[3]},
		{"type=entitlements.active_entitlement_summary.updated", h.raws[4]},
		{"type=invoice.paid", h.raws[5]},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			pe, err := stripeevent.Parse(c.raw)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(c.raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := subscription.Decode(pe); err != nil {
					b.Fatal(err)
				}
			}
			reportEvents(b, 1)
		})
	}
}

func BenchmarkDecodeAndDerive(b *testing.B) {
	rules := subscription.DefaultRules()
	for _, c := range []struct {
		name              string
		subscriptionsOnly bool
	}{{"history=1000", false}, {"history=1000/subscription-events-only", true}} {
		b.Run(c.name, func(b *testing.B) {
			parsed := parseAll(b, longHistory(b, 1000, c.subscriptionsOnly))
			events := make([]subscription.Event, len(parsed))
			b.ReportAllocs()
			for b.Loop() {
				for i := range parsed {
					ev, err := subscription.Decode(parsed[i])
					if err != nil {
						b.Fatal(err)
					}
					events[i] = ev
				}
				subscription.Derive(cus, events, rules)
			}
			reportEvents(b, len(parsed))
		})
	}
	// For comparison: the whole pipeline from raw bytes, stripeevent.Parse included.
	b.Run("history=1000/with-parse", func(b *testing.B) {
		raws := longHistory(b, 1000, false)
		events := make([]subscription.Event, len(raws))
		b.ReportAllocs()
		for b.Loop() {
			for i, raw := range raws {
				pe, err := stripeevent.Parse(raw)
				if err != nil {
					b.Fatal(err)
				}
				if events[i], err = subscription.Decode(pe); err != nil {
					b.Fatal(err)
				}
			}
			subscription.Derive(cus, events, rules)
		}
		reportEvents(b, len(raws))
	})
}

// BenchmarkCheckpointDecode: how a stored checkpoint (the newest of a 14-event customer, as a
// burst drain loads one a customer a batch) decodes with encoding/json, the baseline, and with
// go-json-experiment's decoder in encoding/json's semantics, which pkg/entitlement uses.
func BenchmarkCheckpointDecode(b *testing.B) {
	_, cps, err := subscription.Ladder{}.Resume(cus, nil, arrival(decodeAll(b, longHistory(b, 14, false))), subscription.DefaultRules())
	if err != nil || len(cps) == 0 {
		b.Fatalf("resume: %v (%d checkpoints)", err, len(cps))
	}
	raw, err := json.Marshal(cps[len(cps)-1])
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range []struct {
		name   string
		decode func([]byte, any) error
	}{{"encoding-json", json.Unmarshal}, {"go-json-experiment-v1", jsonv1.Unmarshal}} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				var cp subscription.Checkpoint
				if err := d.decode(raw, &cp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
