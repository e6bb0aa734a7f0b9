package stripeevent_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/tidwall/gjson"
	"github.com/valyala/fastjson"

	"github.com/tollgate/tollgate/pkg/stripeevent"
)

// corpus is every event body of pkg/testdata/stripe-events and of the shared external events
// (../shared/external-events beside the repository, or $TOLLGATE_EXTERNAL_EVENTS) that Parse
// accepts: the payloads the listener takes.
func corpus(tb testing.TB) [][]byte {
	tb.Helper()
	dir := os.Getenv("TOLLGATE_EXTERNAL_EVENTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "external-events")
	}
	local, err := filepath.Glob(filepath.Join("..", "testdata", "stripe-events", "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var external []string
	err = filepath.WalkDir(filepath.Join(dir, "events"), func(path string, _ os.DirEntry, err error) error {
		if strings.HasSuffix(path, ".json") {
			external = append(external, path)
		}
		return err
	})
	if err != nil {
		tb.Fatalf("the external events (set TOLLGATE_EXTERNAL_EVENTS to their folder): %v", err)
	}
	var out [][]byte
	for _, name := range append(local, external...) {
		raw, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := stripeevent.Parse(raw); err == nil {
			out = append(out, raw)
		}
	}
	tb.Logf("%d of %d bodies are events Parse accepts", len(out), len(local)+len(external))
	return out
}

// envelope is what each reader extracts: the fields of stripeevent.Event.
type envelope struct {
	id, typ, apiVersion, account, customer string
	created                                int64
	livemode                               bool
	object, previous                       []byte
}

// BenchmarkEnvelope compares JSON libraries on the listener's parse: validate the body and read
// the envelope, data.object's span and its customer, one corpus event per op.
func BenchmarkEnvelope(b *testing.B) {
	raws := corpus(b)
	for _, lib := range []struct {
		name  string
		parse func([]byte) (envelope, error)
	}{
		{"jsonscan", scanEnvelope},
		{"encoding-json", stdEnvelope},
		{"gjson", gjsonEnvelope},
		{"fastjson", fastjsonEnvelope},
		{"go-json-experiment", v2Envelope},
	} {
		for _, raw := range raws {
			want, _ := scanEnvelope(raw)
			got, err := lib.parse(raw)
			if err != nil || got.id != want.id || got.customer != want.customer || got.created != want.created {
				b.Logf("%s disagrees on %.60s: %+v, %v", lib.name, raw, got, err)
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

func scanEnvelope(raw []byte) (envelope, error) {
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

func gjsonEnvelope(raw []byte) (envelope, error) {
	if !gjson.ValidBytes(raw) {
		return envelope{}, errors.New("invalid")
	}
	// Zero-copy: raw is not modified while its results are read.
	s := unsafe.String(unsafe.SliceData(raw), len(raw))
	r := gjson.GetMany(s, "id", "type", "created", "livemode", "api_version", "account", "data.object",
		"data.previous_attributes")
	if r[2].Type != gjson.Number {
		return envelope{}, errors.New("created")
	}
	created, err := strconv.ParseInt(r[2].Raw, 10, 64)
	if err != nil {
		return envelope{}, err
	}
	out := envelope{id: r[0].String(), typ: r[1].String(), created: created, livemode: r[3].Bool(),
		apiVersion: r[4].String(), account: r[5].String()}
	if !r[6].IsObject() {
		return envelope{}, errors.New("data.object")
	}
	out.object = raw[r[6].Index : r[6].Index+len(r[6].Raw)]
	if r[7].IsObject() {
		out.previous = raw[r[7].Index : r[7].Index+len(r[7].Raw)]
	}
	h := gjson.GetMany(r[6].Raw, "id", "object", "customer")
	switch {
	case h[1].Str == "customer":
		out.customer = h[0].String()
	case h[2].IsObject():
		out.customer = h[2].Get("id").String()
	case h[2].Type == gjson.String || h[2].Type == gjson.Null:
		out.customer = h[2].String()
	default:
		return out, errors.New("customer is neither an id nor an object")
	}
	return out, nil
}

var fastjsonPool fastjson.ParserPool //nolint:gochecknoglobals // a benchmark's parser pool

func fastjsonEnvelope(raw []byte) (envelope, error) {
	p := fastjsonPool.Get()
	defer fastjsonPool.Put(p)
	v, err := p.ParseBytes(raw)
	if err != nil {
		return envelope{}, err
	}
	out := envelope{id: string(v.GetStringBytes("id")), typ: string(v.GetStringBytes("type")),
		created: v.GetInt64("created"), livemode: v.GetBool("livemode"),
		apiVersion: string(v.GetStringBytes("api_version")), account: string(v.GetStringBytes("account"))}
	obj := v.Get("data", "object")
	if obj == nil || obj.Type() != fastjson.TypeObject {
		return envelope{}, errors.New("data.object")
	}
	// fastjson keeps no spans of the input: the object is written out again.
	out.object = obj.MarshalTo(nil)
	if prev := v.Get("data", "previous_attributes"); prev != nil && prev.Type() == fastjson.TypeObject {
		out.previous = prev.MarshalTo(nil)
	}
	c := obj.Get("customer")
	switch {
	case string(obj.GetStringBytes("object")) == "customer":
		out.customer = string(obj.GetStringBytes("id"))
	case c == nil || c.Type() == fastjson.TypeNull:
	case c.Type() == fastjson.TypeString:
		out.customer = string(c.GetStringBytes())
	case c.Type() == fastjson.TypeObject:
		out.customer = string(c.GetStringBytes("id"))
	default:
		return out, errors.New("customer is neither an id nor an object")
	}
	return out, nil
}

// v2Envelope reads the envelope in one streaming pass, which also validates the whole body.
func v2Envelope(raw []byte) (envelope, error) {
	dec := jsontext.NewDecoder(bytes.NewBuffer(raw), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	var out envelope
	var objType, objID, customer string
	err := v2Members(dec, func(key []byte) error {
		var err error
		switch string(key) {
		case "id":
			out.id, err = v2String(dec)
		case "type":
			out.typ, err = v2String(dec)
		case "created":
			out.created, err = v2Int(dec)
		case "livemode":
			var v jsontext.Value
			v, err = dec.ReadValue()
			out.livemode = string(v) == "true"
		case "api_version":
			out.apiVersion, err = v2String(dec)
		case "account":
			out.account, err = v2String(dec)
		case "data":
			err = v2Members(dec, func(key []byte) error {
				switch string(key) {
				case "object":
					if dec.PeekKind() != '{' {
						return errors.New("data.object")
					}
					start := dec.InputOffset()
					err := v2Members(dec, func(key []byte) error {
						var err error
						switch string(key) {
						case "id":
							objID, err = v2String(dec)
						case "object":
							objType, err = v2String(dec)
						case "customer":
							if dec.PeekKind() == '{' {
								return v2Members(dec, func(key []byte) error {
									if string(key) != "id" {
										return dec.SkipValue()
									}
									var err error
									customer, err = v2String(dec)
									return err
								})
							}
							customer, err = v2String(dec)
						default:
							err = dec.SkipValue()
						}
						return err
					})
					out.object = bytes.TrimSpace(bytes.TrimLeft(raw[start:dec.InputOffset()], " \t\r\n:"))
					return err
				case "previous_attributes":
					start := dec.InputOffset()
					kind := dec.PeekKind()
					if err := dec.SkipValue(); err != nil {
						return err
					}
					if kind == '{' {
						out.previous = bytes.TrimSpace(bytes.TrimLeft(raw[start:dec.InputOffset()], " \t\r\n:"))
					}
					return nil
				default:
					return dec.SkipValue()
				}
			})
		default:
			err = dec.SkipValue()
		}
		return err
	})
	if err != nil {
		return envelope{}, err
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) && err != nil {
		return envelope{}, err
	}
	out.customer = customer
	if objType == "customer" {
		out.customer = objID
	}
	return out, nil
}

// v2Members calls fn with the name of each member of the object (or null) the decoder is at;
// fn reads the value.
func v2Members(dec *jsontext.Decoder, fn func(key []byte) error) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		return nil
	case '{':
	default:
		return errors.New("object expected")
	}
	var buf [64]byte
	for dec.PeekKind() == '"' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		key := name[1 : len(name)-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			key, _ = jsontext.AppendUnquote(buf[:0], name)
		}
		if err := fn(key); err != nil {
			return err
		}
	}
	_, err = dec.ReadToken()
	return err
}

func v2String(dec *jsontext.Decoder) (string, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return "", err
	}
	switch v.Kind() {
	case 'n':
		return "", nil
	case '"':
	default:
		return "", errors.New("string expected")
	}
	if s := v[1 : len(v)-1]; bytes.IndexByte(s, '\\') < 0 && isASCII(s) {
		return string(s), nil
	}
	b, _ := jsontext.AppendUnquote(nil, v)
	return string(b), nil
}

func isASCII(s []byte) bool {
	for _, c := range s {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func v2Int(dec *jsontext.Decoder) (int64, error) {
	v, err := dec.ReadValue()
	if err != nil {
		return 0, err
	}
	if v.Kind() == 'n' {
		return 0, nil
	}
	return strconv.ParseInt(string(v), 10, 64)
}
