package stripejson_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/internal/stripejson"
)

func TestRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"id", `"cus_1"`, "cus_1", false},
		{"escaped id", `"cus_\u0031"`, "cus_1", false},
		{"expanded", `{"object":"customer","id":"cus_2","metadata":{"id":"x"}}`, "cus_2", false},
		{"null", `null`, "", false},
		{"number", `12`, "", true},
		{"broken object", `{"id":`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got string
			err := stripejson.Read([]byte(tt.in), func(dec *stripejson.Decoder) (err error) {
				got, err = stripejson.Ref(dec)
				return err
			})
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestObjectSpansAndSkips(t *testing.T) {
	t.Parallel()
	d := []byte(` {"a": {"b": [1, "x\"}", {"c": null}]}, "id" : "evt_1", "n": -5, "t": true} `)
	got := map[string]string{}
	err := stripejson.Object(d, func(dec *stripejson.Decoder, key []byte) error {
		v, err := stripejson.Span(dec, d, dec.SkipValue)
		got[string(key)] = string(v)
		return err
	})
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"a": `{"b": [1, "x\"}", {"c": null}]}`, "id": `"evt_1"`, "n": "-5", "t": "true",
	}, got)
}

// Malformed JSON is ErrSyntax whether or not the reader had already refused a value.
func TestSyntax(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{``, ` `, `{"a":1`, `{"a" 1}`, `{"a":"x}`, `{"a":1,}`, `{} {}`, `{}x`, `000`, `[1,]`, "{\"a\":\"\x01\"}"} {
		require.False(t, json.Valid([]byte(bad)), bad)
		err := stripejson.Object([]byte(bad), func(dec *stripejson.Decoder, _ []byte) error { return dec.SkipValue() })
		require.ErrorIs(t, err, stripejson.ErrSyntax, bad)
	}
	err := stripejson.Object([]byte(`[1]`), func(dec *stripejson.Decoder, _ []byte) error { return dec.SkipValue() })
	require.Error(t, err)
	require.NotErrorIs(t, err, stripejson.ErrSyntax, "valid JSON of the wrong shape")
}

// The odd shapes encoding/json accepts are read as it reads them.
func TestAsEncodingJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
	}{
		{"duplicate names: the last wins", `{"s":"first","s":"last"}`},
		{"invalid UTF-8 reads as U+FFFD", "{\"s\":\"a\xffb\xc3\"}"},
		{"lone surrogate reads as U+FFFD", `{"s":"a\ud800b"}`},
		{"escaped name", `{"\u0073":"x"}`},
		{"null", `{"s":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var want struct {
				S string `json:"s"`
			}
			require.NoError(t, json.Unmarshal([]byte(tt.in), &want))
			var got string
			err := stripejson.Object([]byte(tt.in), func(dec *stripejson.Decoder, key []byte) (err error) {
				if string(key) != "s" {
					return dec.SkipValue()
				}
				got, err = stripejson.String(dec)
				return err
			})
			require.NoError(t, err)
			require.Equal(t, want.S, got)
		})
	}
}

func TestScalars(t *testing.T) {
	t.Parallel()
	read := func(in string, fn func(*stripejson.Decoder) error) error {
		return stripejson.Read([]byte(in), fn)
	}
	for in, want := range map[string]int64{`1700000000`: 1700000000, `null`: 0, `-5`: -5, `9223372036854775807`: 1<<63 - 1} {
		var n int64
		require.NoError(t, read(in, func(dec *stripejson.Decoder) (err error) { n, err = stripejson.Int(dec); return err }), in)
		require.Equal(t, want, n, in)
	}
	for _, in := range []string{`1.5`, `1e3`, `9223372036854775808`, `"1"`, `true`} {
		require.Error(t, read(in, func(dec *stripejson.Decoder) error { _, err := stripejson.Int(dec); return err }), in)
	}
	for in, want := range map[string]bool{`true`: true, `false`: false, `null`: false} {
		var b bool
		require.NoError(t, read(in, func(dec *stripejson.Decoder) (err error) { b, err = stripejson.Bool(dec); return err }), in)
		require.Equal(t, want, b, in)
	}
	require.Error(t, read(`"true"`, func(dec *stripejson.Decoder) error { _, err := stripejson.Bool(dec); return err }))
	require.Error(t, read(`{}`, func(dec *stripejson.Decoder) error { _, err := stripejson.String(dec); return err }))
	var n int
	require.NoError(t, read(`[{"a":1},null,[2]]`, func(dec *stripejson.Decoder) error {
		return stripejson.Elements(dec, func() error { n++; return dec.SkipValue() })
	}))
	require.Equal(t, 3, n)
}
