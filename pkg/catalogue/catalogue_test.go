package catalogue_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func load(t *testing.T, db *pgtest.DB) map[string]catalogue.Kind {
	t.Helper()
	c, err := catalogue.Load(context.Background(), db.Pool)
	require.NoError(t, err)
	out := map[string]catalogue.Kind{}
	for _, n := range c.Names() {
		k, ok := c.Kind(n)
		require.True(t, ok, n)
		out[n] = k
	}
	require.Equal(t, len(out), c.Len())
	require.IsIncreasing(t, c.Names())
	return out
}

// Write makes the plans' names exactly the given set, leaves the grants' names alone, and Load
// reads both.
func TestWriteReplacesOnlyItsSource(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	require.Empty(t, load(t, db))

	require.NoError(t, catalogue.Write(ctx, db.Pool, catalogue.SourcePlans,
		append(catalogue.Features("export", "pro", "export"), catalogue.Limits("seats")...)))
	require.NoError(t, catalogue.Add(ctx, db.Pool, catalogue.SourceGrant, catalogue.Features("beta")))
	require.Equal(t, map[string]catalogue.Kind{"export": "feature", "pro": "feature", "seats": "limit", "beta": "feature"}, load(t, db))

	// A new PLANS_FILE: pro is gone, projects is new; the grant's name stays.
	require.NoError(t, catalogue.Write(ctx, db.Pool, catalogue.SourcePlans,
		append(catalogue.Features("export"), catalogue.Limits("seats", "projects")...)))
	require.Equal(t, map[string]catalogue.Kind{"export": "feature", "seats": "limit", "projects": "limit", "beta": "feature"}, load(t, db))

	// No plans at all.
	require.NoError(t, catalogue.Write(ctx, db.Pool, catalogue.SourcePlans, nil))
	require.Equal(t, map[string]catalogue.Kind{"beta": "feature"}, load(t, db))

	// Add is idempotent and removes nothing.
	require.NoError(t, catalogue.Add(ctx, db.Pool, catalogue.SourceGrant, catalogue.Features("beta")))
	require.NoError(t, catalogue.Add(ctx, db.Pool, catalogue.SourceGrant, nil))
	require.Equal(t, map[string]catalogue.Kind{"beta": "feature"}, load(t, db))
}

// A name given two kinds gets PLANS_FILE's, whatever the order of writes.
func TestLoadResolvesAKindConflictToThePlans(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	require.NoError(t, catalogue.Add(ctx, db.Pool, catalogue.SourceGrant, catalogue.Features("seats")))
	require.NoError(t, catalogue.Write(ctx, db.Pool, catalogue.SourcePlans, catalogue.Limits("seats")))
	require.Equal(t, map[string]catalogue.Kind{"seats": "limit"}, load(t, db))
}

func TestWriteRefusesBadEntries(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	require.NoError(t, catalogue.Write(ctx, db.Pool, catalogue.SourcePlans, catalogue.Features("pro")))
	for name, tc := range map[string]struct {
		source  catalogue.Source
		entries []catalogue.Entry
	}{
		"empty name":     {catalogue.SourcePlans, catalogue.Features(" ")},
		"unknown kind":   {catalogue.SourcePlans, []catalogue.Entry{{Name: "x", Kind: "flag"}}},
		"unknown source": {"stripe", catalogue.Features("x")},
	} {
		require.ErrorIs(t, catalogue.Write(ctx, db.Pool, tc.source, tc.entries), catalogue.ErrInvalid, name)
		require.ErrorIs(t, catalogue.Add(ctx, db.Pool, tc.source, tc.entries), catalogue.ErrInvalid, name)
	}
	require.Equal(t, map[string]catalogue.Kind{"pro": "feature"}, load(t, db), "nothing written")
}

// Every change notifies tollgate_catalogue once it commits: the query API reloads on it.
func TestWriteNotifies(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.URL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, "LISTEN tollgate_catalogue")
	require.NoError(t, err)
	require.NoError(t, catalogue.Add(ctx, db.Pool, catalogue.SourceGrant, catalogue.Features("beta")))
	n, err := conn.WaitForNotification(ctx)
	require.NoError(t, err)
	require.Equal(t, "tollgate_catalogue", n.Channel)
}

func TestFromPlans(t *testing.T) {
	t.Parallel()
	require.Equal(t, catalogue.Features("export", "pro", "team"),
		catalogue.FromPlans(map[string][]string{"price_1": {"pro", "export"}, "prod_2": {"team", "pro"}, "price_3": {}}))
	require.Empty(t, catalogue.FromPlans(nil))
	require.Equal(t, catalogue.Limits("projects", "seats"),
		catalogue.FromPlanLimits(map[string]map[string]int{"price_1": {"seats": 1, "projects": 10}, "prod_2": {"projects": 5}}))
	require.Empty(t, catalogue.FromPlanLimits[int](nil))
}
