package jsonscan_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/internal/jsonscan"
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
		{"absent", ``, "", false},
		{"number", `12`, "", true},
		{"broken object", `{"id":`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := jsonscan.Ref([]byte(tt.in))
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestMembersSkipsNestedValues(t *testing.T) {
	t.Parallel()
	d := []byte(` {"a": {"b": [1, "x\"}", {"c": null}]}, "id" : "evt_1", "n": -5, "t": true} `)
	got := map[string]string{}
	err := jsonscan.EachMember(d, func(key []byte, i int) (int, error) {
		v, end, err := jsonscan.Value(d, i)
		got[string(key)] = string(v)
		return end, err
	})
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"a": `{"b": [1, "x\"}", {"c": null}]}`, "id": `"evt_1"`, "n": "-5", "t": "true",
	}, got)

	for _, bad := range []string{`{"a":1`, `{"a" 1}`, `[1]`, `{"a":"x}`, `{"a":1,}`} {
		err := jsonscan.EachMember([]byte(bad), func(_ []byte, i int) (int, error) {
			return jsonscan.SkipValue([]byte(bad), i)
		})
		require.ErrorIs(t, err, jsonscan.ErrSyntax, bad)
	}
}
