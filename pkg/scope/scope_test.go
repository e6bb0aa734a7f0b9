package scope_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/scope"
)

func TestKeyStringRoundTrips(t *testing.T) {
	t.Parallel()
	for _, k := range []scope.Key{
		{ID: "cus_1"},
		scope.Live().Of("u_42"),
		{Scope: scope.Scope{Account: "acct_1"}, ID: "a user with spaces"},
		{Scope: scope.Scope{Livemode: true, Account: "acct_1"}, ID: ""},
	} {
		got, err := scope.ParseKey(k.String())
		require.NoError(t, err, k.String())
		require.Equal(t, k, got)
	}
	require.Equal(t, "live  u_42", scope.Live().Of("u_42").String())
	for _, bad := range []string{"", "u_42", "prod  u_42", "live u_42"} {
		_, err := scope.ParseKey(bad)
		require.Error(t, err, bad)
	}
}

func TestCompareOrdersModeAccountID(t *testing.T) {
	t.Parallel()
	keys := []scope.Key{
		scope.Live().Of("a"), {ID: "b"}, {Scope: scope.Scope{Account: "acct_1"}, ID: "a"}, {ID: "a"},
	}
	slices.SortFunc(keys, scope.Compare)
	require.Equal(t, []scope.Key{{ID: "a"}, {ID: "b"}, {Scope: scope.Scope{Account: "acct_1"}, ID: "a"}, scope.Live().Of("a")}, keys)
}

func TestValidAccount(t *testing.T) {
	t.Parallel()
	for s, ok := range map[string]bool{"acct_1Nv0FGQ9RKHgCVdK": true, "acct_": false, "cus_1": false, "acct_1 2": false, "acct_1/2": false, "": false} {
		require.Equal(t, ok, scope.ValidAccount(s), s)
	}
}
