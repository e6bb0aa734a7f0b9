package subscription_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/tidwall/gjson"
	"github.com/valyala/fastjson"

	"github.com/tollgate/tollgate/pkg/stripeevent"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// objectCorpus is every event of pkg/testdata/stripe-events and of the shared external events
// (../shared/external-events beside the repository, or $TOLLGATE_EXTERNAL_EVENTS) whose object
// Decode reads, parsed.
func objectCorpus(tb testing.TB) []stripeevent.Event {
	tb.Helper()
	dir := os.Getenv("TOLLGATE_EXTERNAL_EVENTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "external-events")
	}
	names, err := filepath.Glob(filepath.Join("..", "testdata", "stripe-events", "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	err = filepath.WalkDir(filepath.Join(dir, "events"), func(path string, _ os.DirEntry, err error) error {
		if strings.HasSuffix(path, ".json") {
			names = append(names, path)
		}
		return err
	})
	if err != nil {
		tb.Fatalf("the external events (set TOLLGATE_EXTERNAL_EVENTS to their folder): %v", err)
	}
	var out []stripeevent.Event
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		pe, err := stripeevent.Parse(raw)
		if err != nil || !subscription.ReadsObject(pe.Type) {
			continue
		}
		if _, err := subscription.Decode(pe); err == nil {
			out = append(out, pe)
		}
	}
	tb.Logf("%d of %d bodies are events whose object Decode reads", len(out), len(names))
	return out
}

// BenchmarkObjectDecode compares JSON libraries on the processor's decode: the facts the
// derivation reads of data.object and data.previous_attributes (subscription, customer,
// checkout session and entitlement summary fields), one corpus event per op. The events are
// parsed beforehand.
func BenchmarkObjectDecode(b *testing.B) {
	events := objectCorpus(b)
	for _, lib := range []struct {
		name   string
		decode func(stripeevent.Event) error
	}{
		{"Decode", func(pe stripeevent.Event) error { _, err := subscription.Decode(pe); return err }},
		{"encoding-json", stdFacts},
		{"gjson", gjsonFacts},
		{"fastjson", fastjsonFacts},
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

var factPaths = []string{"id", "customer", "status", "mode", "client_reference_id", "subscription", //nolint:gochecknoglobals // constant
	"latest_invoice", "cancel_at_period_end", "current_period_end", "current_period_start", "trial_end", "ended_at",
	"cancel_at", "canceled_at", "pause_collection.behavior", "pause_collection.resumes_at", "items.data",
	"metadata", "entitlements.data.#.lookup_key"}

func gjsonFacts(pe stripeevent.Event) error {
	for _, raw := range [][]byte{pe.Object, pe.PreviousAttributes} {
		if raw == nil {
			continue
		}
		r := gjson.GetMany(unsafe.String(unsafe.SliceData(raw), len(raw)), factPaths...)
		var n int
		for _, v := range r {
			if v.Type == gjson.String {
				n += len(v.String())
			}
		}
		r[16].ForEach(func(_, item gjson.Result) bool {
			for _, p := range []string{"price", "plan"} {
				if v := item.Get(p); v.IsObject() {
					n += len(v.Get("id").String()) + len(v.Get("product.id").String())
				} else {
					n += len(v.String())
				}
			}
			n += int(item.Get("current_period_end").Int())
			return true
		})
		r[17].ForEach(func(k, v gjson.Result) bool { n += len(k.String()) + len(v.String()); return true })
		_ = n
	}
	return nil
}

var fastjsonParsers fastjson.ParserPool //nolint:gochecknoglobals // a benchmark's parser pool

func fastjsonFacts(pe stripeevent.Event) error {
	p := fastjsonParsers.Get()
	defer fastjsonParsers.Put(p)
	for _, raw := range [][]byte{pe.Object, pe.PreviousAttributes} {
		if raw == nil {
			continue
		}
		v, err := p.ParseBytes(raw)
		if err != nil {
			return err
		}
		var n int
		for _, k := range []string{"id", "status", "mode", "client_reference_id"} {
			n += len(string(v.GetStringBytes(k)))
		}
		for _, k := range []string{"customer", "subscription", "latest_invoice"} {
			if r := v.Get(k); r != nil && r.Type() == fastjson.TypeObject {
				n += len(string(r.GetStringBytes("id")))
			} else if r != nil {
				n += len(string(r.GetStringBytes()))
			}
		}
		for _, k := range []string{"current_period_end", "current_period_start", "trial_end", "ended_at", "cancel_at", "canceled_at"} {
			n += int(v.GetInt64(k))
		}
		_ = v.GetBool("cancel_at_period_end")
		n += len(string(v.GetStringBytes("pause_collection", "behavior"))) + int(v.GetInt64("pause_collection", "resumes_at"))
		for _, it := range v.GetArray("items", "data") {
			for _, k := range []string{"price", "plan"} {
				if r := it.Get(k); r != nil && r.Type() == fastjson.TypeObject {
					n += len(string(r.GetStringBytes("id"))) + len(string(r.GetStringBytes("product")))
				} else if r != nil {
					n += len(string(r.GetStringBytes()))
				}
			}
			n += int(it.GetInt64("current_period_end"))
		}
		if md := v.GetObject("metadata"); md != nil {
			md.Visit(func(k []byte, v *fastjson.Value) { n += len(string(k)) + len(string(v.GetStringBytes())) })
		}
		for _, e := range v.GetArray("entitlements", "data") {
			n += len(string(e.GetStringBytes("lookup_key")))
		}
		_ = n
	}
	return nil
}
