package audit_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/audit"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func TestRecordAndList(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	for i := range 5 {
		require.NoError(t, audit.Record(ctx, db.Pool, audit.Entry{Actor: "alice", Via: audit.ViaConsole, Action: "grant.add",
			Target: fmt.Sprintf("grt_%d", i), Outcome: audit.OutcomeOK, Remote: "10.0.0.1"}))
	}
	require.NoError(t, audit.Record(ctx, db.Pool, audit.Entry{Actor: "bob", Via: audit.ViaAPI, Action: "dead_letter.redrive",
		Target: strings.Repeat("x", 10_000), Outcome: "failed: no such dead letter"}))

	page, err := audit.List(ctx, db.Pool, 3, 0)
	require.NoError(t, err)
	require.Len(t, page, 3)
	require.Equal(t, "bob", page[0].Actor, "newest first")
	require.Len(t, page[0].Target, 500, "fields are clipped")
	require.False(t, page[0].At.IsZero())
	next, err := audit.List(ctx, db.Pool, 10, page[2].ID)
	require.NoError(t, err)
	require.Len(t, next, 3)
	require.Equal(t, "grt_0", next[2].Target)
}
