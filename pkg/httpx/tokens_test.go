package httpx_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/httpx"
)

func TestTokens(t *testing.T) {
	t.Parallel()
	s := httpx.NewTokens([]string{"alpha", "beta-longer-token"})
	for _, tc := range []struct {
		name, header string
		ok           bool
	}{
		{"first token", "Bearer alpha", true},
		{"second token", "Bearer beta-longer-token", true},
		{"scheme in any case", "bEaReR alpha", true},
		{"spaces around the token", "Bearer  alpha ", true},
		{"unknown token", "Bearer gamma", false},
		{"prefix of a token", "Bearer alph", false},
		{"no scheme", "alpha", false},
		{"other scheme", "Basic alpha", false},
		{"empty token", "Bearer ", false},
		{"empty header", "", false},
	} {
		require.Equal(t, tc.ok, s.ValidHeader(tc.header), tc.name)
	}
	require.False(t, httpx.NewTokens(nil).Valid(""), "an empty set holds no token")
}
