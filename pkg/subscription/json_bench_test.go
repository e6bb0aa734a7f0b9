package subscription_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// objectCorpus is every real event (stripetest.Corpus) whose object Decode reads, parsed.
func objectCorpus(tb testing.TB) []stripeevent.Event {
	tb.Helper()
	all := stripetest.Corpus(tb)
	var out []stripeevent.Event
	for _, raw := range all {
		pe, err := stripeevent.Parse(raw)
		if err != nil || !subscription.ReadsObject(pe.Type) {
			continue
		}
		if _, err := subscription.Decode(pe); err == nil {
			out = append(out, pe)
		}
	}
	tb.Logf("%d of %d bodies are events whose object Decode reads", len(out), len(all))
	return out
}

// BenchmarkObjectDecode compares Decode, on go-json-experiment/json's streaming decoder, with
// encoding/json into one small struct as the baseline, on the processor's decode: the facts the
// derivation reads of data.object and data.previous_attributes (subscription, customer, checkout
// session and entitlement summary fields), one corpus event per op. The events are parsed
// beforehand. The figures of the libraries not chosen are in the README ("JSON decoding").
func BenchmarkObjectDecode(b *testing.B) {
	events := objectCorpus(b)
	for _, lib := range []struct {
		name   string
		decode func(stripeevent.Event) error
	}{
		{"go-json-experiment", func(pe stripeevent.Event) error { _, err := subscription.Decode(pe); return err }},
		{"encoding-json", stdFacts},
	} {
		b.Run("lib="+lib.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := lib.decode(events[i%len(events)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// facts holds the union of the fields Decode reads, for encoding/json.
type facts struct {
	ID                 string          `json:"id"`
	Customer           json.RawMessage `json:"customer"`
	Status             string          `json:"status"`
	Mode               string          `json:"mode"`
	ClientReferenceID  string          `json:"client_reference_id"`
	Subscription       json.RawMessage `json:"subscription"`
	LatestInvoice      json.RawMessage `json:"latest_invoice"`
	CancelAtPeriodEnd  bool            `json:"cancel_at_period_end"`
	CurrentPeriodEnd   int64           `json:"current_period_end"`
	CurrentPeriodStart int64           `json:"current_period_start"`
	TrialEnd           int64           `json:"trial_end"`
	EndedAt            int64           `json:"ended_at"`
	CancelAt           int64           `json:"cancel_at"`
	CanceledAt         int64           `json:"canceled_at"`
	PauseCollection    *struct {
		Behavior  string `json:"behavior"`
		ResumesAt int64  `json:"resumes_at"`
	} `json:"pause_collection"`
	Items *struct {
		Data []struct {
			Price            json.RawMessage `json:"price"`
			Plan             json.RawMessage `json:"plan"`
			CurrentPeriodEnd int64           `json:"current_period_end"`
		} `json:"data"`
	} `json:"items"`
	Metadata     map[string]*string `json:"metadata"`
	Entitlements *struct {
		Data []struct {
			LookupKey *string `json:"lookup_key"`
		} `json:"data"`
	} `json:"entitlements"`
}

func stdRef(raw json.RawMessage) (string, error) {
	switch raw = bytes.TrimSpace(raw); {
	case len(raw) == 0 || string(raw) == "null":
		return "", nil
	case raw[0] == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case raw[0] == '{':
		var ref struct {
			ID      string          `json:"id"`
			Product json.RawMessage `json:"product"`
		}
		err := json.Unmarshal(raw, &ref)
		if err == nil {
			_, err = stdRef(ref.Product)
		}
		return ref.ID, err
	}
	return "", errors.New("reference is neither an id nor an object")
}

func stdFacts(pe stripeevent.Event) error {
	for _, raw := range []json.RawMessage{pe.Object, pe.PreviousAttributes} {
		if raw == nil {
			continue
		}
		var f facts
		if err := json.Unmarshal(raw, &f); err != nil {
			return err
		}
		for _, ref := range []json.RawMessage{f.Customer, f.Subscription, f.LatestInvoice} {
			if _, err := stdRef(ref); err != nil {
				return err
			}
		}
		if f.Items != nil {
			for _, it := range f.Items.Data {
				for _, ref := range []json.RawMessage{it.Price, it.Plan} {
					if _, err := stdRef(ref); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
