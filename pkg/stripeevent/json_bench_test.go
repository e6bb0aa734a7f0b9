package stripeevent_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/testkit/stripetest"
)

// corpus is every real event body (stripetest.Corpus) that Parse accepts: the payloads the
// listener takes.
func corpus(tb testing.TB) [][]byte {
	tb.Helper()
	all := stripetest.Corpus(tb)
	var out [][]byte
	for _, raw := range all {
		if _, err := stripeevent.Parse(raw); err == nil {
			out = append(out, raw)
		}
	}
	tb.Logf("%d of %d bodies are events Parse accepts", len(out), len(all))
	return out
}

// envelope is what each reader extracts: the fields of stripeevent.Event.
type envelope struct {
	id, typ, apiVersion, account, customer string
	created                                int64
	livemode                               bool
	object, previous                       []byte
}

// BenchmarkEnvelope compares stripeevent.Parse, on go-json-experiment/json's streaming decoder,
// with encoding/json into small structs as the baseline, on the listener's parse: validate the
// body and read the envelope, data.object's span and its customer, one corpus event per op. The
// figures of the libraries not chosen are in the README ("JSON decoding").
func BenchmarkEnvelope(b *testing.B) {
	raws := corpus(b)
	for _, lib := range []struct {
		name  string
		parse func([]byte) (envelope, error)
	}{
		{"go-json-experiment", parseEnvelope}, // stripeevent.Parse
		{"encoding-json", stdEnvelope},
	} {
		for _, raw := range raws {
			want, _ := parseEnvelope(raw)
			got, err := lib.parse(raw)
			if err != nil || got.id != want.id || got.customer != want.customer || got.created != want.created ||
				!bytes.Equal(got.object, want.object) {
				b.Fatalf("%s disagrees with Parse on %.60s: %+v, %v", lib.name, raw, got, err)
			}
		}
		b.Run("lib="+lib.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := lib.parse(raws[i%len(raws)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func parseEnvelope(raw []byte) (envelope, error) {
	ev, err := stripeevent.Parse(raw)
	return envelope{id: ev.ID, typ: ev.Type, apiVersion: ev.APIVersion, account: ev.Account, customer: ev.CustomerID,
		created: ev.Created, livemode: ev.Livemode, object: ev.Object, previous: ev.PreviousAttributes}, err
}

func stdEnvelope(raw []byte) (envelope, error) {
	var e struct {
		ID         string `json:"id"`
		Type       string `json:"type"`
		Created    int64  `json:"created"`
		Livemode   bool   `json:"livemode"`
		APIVersion string `json:"api_version"`
		Account    string `json:"account"`
		Data       struct {
			Object             json.RawMessage `json:"object"`
			PreviousAttributes json.RawMessage `json:"previous_attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return envelope{}, err
	}
	var head struct {
		ID       string          `json:"id"`
		Object   string          `json:"object"`
		Customer json.RawMessage `json:"customer"`
	}
	if err := json.Unmarshal(e.Data.Object, &head); err != nil {
		return envelope{}, err
	}
	out := envelope{id: e.ID, typ: e.Type, apiVersion: e.APIVersion, account: e.Account, created: e.Created,
		livemode: e.Livemode, object: e.Data.Object, previous: e.Data.PreviousAttributes}
	if head.Object == "customer" {
		out.customer = head.ID
		return out, nil
	}
	switch c := bytes.TrimSpace(head.Customer); {
	case len(c) == 0 || string(c) == "null":
	case c[0] == '"':
		err := json.Unmarshal(c, &out.customer)
		return out, err
	case c[0] == '{':
		var ref struct {
			ID string `json:"id"`
		}
		err := json.Unmarshal(c, &ref)
		out.customer = ref.ID
		return out, err
	default:
		return out, errors.New("customer is neither an id nor an object")
	}
	return out, nil
}
