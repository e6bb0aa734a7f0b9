package grant_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func ptr[T any](v T) *T { return &v }

func TestValidate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	rules := subscription.DefaultRules()
	rules.Plans = map[string][]string{"price_pro": {"pro"}}
	rules.Limits = map[string]map[string]subscription.Limit{"price_pro": {"projects": {Value: 10}}}
	ok := grant.New{Scope: scope.Live(), UserID: "u_42", Features: []string{"premium"}, Reason: "support comp", By: "ops"}
	tests := []struct {
		name    string
		edit    func(n *grant.New)
		wantErr string
	}{
		{name: "the contract's example", edit: func(n *grant.New) {
			n.Limits = map[string]int64{"projects": 5}
			n.Until = ptr(now.Add(24 * time.Hour))
		}},
		{name: "limits only", edit: func(n *grant.New) { n.Features, n.Limits = nil, map[string]int64{"projects": 5} }},
		{name: "nothing given", edit: func(n *grant.New) { n.Features = nil }, wantErr: "features or limits must be non-empty"},
		{name: "until in the past", edit: func(n *grant.New) { n.Until = ptr(now.Add(-time.Second)) }, wantErr: "not in the future"},
		{name: "until now", edit: func(n *grant.New) { n.Until = ptr(now) }, wantErr: "not in the future"},
		{name: "negative limit", edit: func(n *grant.New) { n.Limits = map[string]int64{"projects": -1} }, wantErr: `limit "projects" is negative`},
		{name: "a plan's limit as a feature", edit: func(n *grant.New) { n.Features = []string{"projects"} }, wantErr: `"projects" is a limit`},
		{name: "a plan's feature as a limit", edit: func(n *grant.New) { n.Limits = map[string]int64{"pro": 1} }, wantErr: `"pro" is a feature`},
		{name: "premium as a limit", edit: func(n *grant.New) { n.Features, n.Limits = nil, map[string]int64{"premium": 1} }, wantErr: `"premium" is a feature`},
		{name: "a name both feature and limit", edit: func(n *grant.New) {
			n.Features, n.Limits = []string{"beta"}, map[string]int64{"beta": 1}
		}, wantErr: `"beta" is a limit`},
		{name: "no user", edit: func(n *grant.New) { n.UserID = "" }, wantErr: "user_id"},
		{name: "a user id with a space", edit: func(n *grant.New) { n.UserID = "u 42" }, wantErr: "user_id"},
		{name: "no reason", edit: func(n *grant.New) { n.Reason = "  " }, wantErr: "reason is required"},
		{name: "empty feature name", edit: func(n *grant.New) { n.Features = []string{""} }, wantErr: "feature name"},
		{name: "bad account", edit: func(n *grant.New) { n.Scope.Account = "cus_1" }, wantErr: "account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := ok
			tt.edit(&n)
			got, err := n.Validate(now, rules)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, grant.ErrInvalid)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, got.Features)
			require.NotNil(t, got.Limits)
		})
	}
}

type bundle struct {
	db  *pgtest.DB
	ctx context.Context
}

func setup(t *testing.T) bundle {
	t.Helper()
	return bundle{db: pgtest.New(t), ctx: context.Background()}
}

// inTx runs fn in a transaction and commits it.
func (b bundle) inTx(t *testing.T, fn func(tx pgx.Tx)) {
	t.Helper()
	tx, err := b.db.Pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(b.ctx) }()
	fn(tx)
	require.NoError(t, tx.Commit(b.ctx))
}

// give creates a grant (unvalidated, so that an until in the past can be stored) and refreshes its user.
func (b bundle) give(t *testing.T, n grant.New) grant.Grant {
	t.Helper()
	if n.By == "" {
		n.By = "ops"
	}
	if n.Reason == "" {
		n.Reason = "support comp"
	}
	if n.Features == nil {
		n.Features = []string{}
	}
	if n.Limits == nil {
		n.Limits = map[string]int64{}
	}
	var g grant.Grant
	b.inTx(t, func(tx pgx.Tx) {
		var err error
		g, err = grant.Create(b.ctx, tx, n)
		require.NoError(t, err)
		_, err = grant.RefreshUsers(b.ctx, tx, []scope.Key{g.User()})
		require.NoError(t, err)
	})
	return g
}

func TestGrantOnlyUserAndOnTopOfSubscriptions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	live := scope.Live()
	u42, u7 := live.Of("u_42"), live.Of("u_7")

	// u_7 has a subscription giving 10 projects and 3 seats.
	b.inTx(t, func(tx pgx.Tx) {
		require.NoError(t, entitlement.SaveCustomers(b.ctx, tx, []entitlement.Customer{{
			Scope: live, CustomerID: "cus_7", UserID: "u_7", Premium: true, Status: "active", Features: []string{"pro"},
			Limits: map[string]int64{"projects": 10, "seats": 3}, Subscriptions: []entitlement.Subscription{},
			LastEventID: "evt_7", LastEventCreated: time.Unix(1765000000, 0).UTC(),
		}}))
		_, err := grant.RefreshUsers(b.ctx, tx, []scope.Key{u7})
		require.NoError(t, err)
	})

	until := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	g1 := b.give(t, grant.New{Scope: live, UserID: "u_42", Features: []string{"premium"}, Limits: map[string]int64{"projects": 5}, Until: &until})
	require.Regexp(t, `^grt_[0-9a-f]{24}$`, g1.ID)
	g2 := b.give(t, grant.New{Scope: live, UserID: "u_7", Features: []string{"export"}, Limits: map[string]int64{"projects": 5}, Reason: "partner", By: "sales"})

	u, err := entitlement.GetUser(b.ctx, b.db.Pool, u42)
	require.NoError(t, err, "a user known only by a grant has an answer")
	a := entitlement.UserAnswer(u)
	require.Equal(t, []string{}, a.CustomerIDs)
	require.Equal(t, "none", a.Status)
	require.True(t, a.Premium)
	require.Equal(t, []string{"premium"}, a.Features)
	require.Equal(t, map[string]int64{"projects": 5}, a.Limits)
	require.Nil(t, a.LastEventID)
	require.Nil(t, a.LastEventCreated)
	require.Equal(t, []entitlement.Grant{{ID: g1.ID, Features: []string{"premium"}, Limits: map[string]int64{"projects": 5},
		Until: &until, Reason: "support comp", By: "ops", CreatedAt: g1.CreatedAt}}, a.Grants)

	u, err = entitlement.GetUser(b.ctx, b.db.Pool, u7)
	require.NoError(t, err)
	require.Equal(t, []string{"export", "pro"}, u.Features, "a grant's features join the subscriptions'")
	require.Equal(t, map[string]int64{"projects": 15, "seats": 3}, u.Limits, "a grant's limits add on top")
	require.Equal(t, "active", u.Status)
	require.Equal(t, "evt_7", u.LastEventID)
	require.Len(t, u.Grants, 1)

	// Revoking ends it at once; the answer goes back to what the subscription gives.
	b.inTx(t, func(tx pgx.Tx) {
		r, err := grant.Revoke(b.ctx, tx, g2.ID, "ops", "partner left")
		require.NoError(t, err)
		require.Equal(t, grant.EndRevoked, *r.EndedWhy)
		require.False(t, r.Active)
		_, err = grant.RefreshUsers(b.ctx, tx, []scope.Key{u7})
		require.NoError(t, err)
	})
	u, err = entitlement.GetUser(b.ctx, b.db.Pool, u7)
	require.NoError(t, err)
	require.Equal(t, []string{"pro"}, u.Features)
	require.Equal(t, map[string]int64{"projects": 10, "seats": 3}, u.Limits)
	require.Empty(t, u.Grants)

	_, err = grant.Revoke(b.ctx, b.db.Pool, g2.ID, "ops", "again")
	require.ErrorIs(t, err, grant.ErrEnded)
	_, err = grant.Revoke(b.ctx, b.db.Pool, "grt_nope", "ops", "")
	require.ErrorIs(t, err, grant.ErrNotFound)

	// Another scope does not see them.
	_, err = entitlement.GetUser(b.ctx, b.db.Pool, scope.Scope{}.Of("u_42"))
	require.ErrorIs(t, err, entitlement.ErrNotFound)
	gs, err := grant.List(b.ctx, b.db.Pool, scope.Scope{}.Of("u_42"))
	require.NoError(t, err)
	require.Empty(t, gs)

	// The log keeps every step, and the user timeline's why.
	log, err := grant.Log(b.ctx, b.db.Pool, u7)
	require.NoError(t, err)
	require.Len(t, log, 2)
	require.Equal(t, "created", log[0].Action)
	require.Equal(t, g2.ID+" by sales until revoked: partner", log[0].Why())
	require.Equal(t, g2.ID+" revoked by ops: partner left", log[1].Why())
}

func TestGrantsAreKeptForGood(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.give(t, grant.New{Scope: scope.Live(), UserID: "u_1", Features: []string{"beta"}})
	for _, stmt := range []string{
		`DELETE FROM grants`,
		`DELETE FROM grant_log`,
		`UPDATE grant_log SET reason = 'rewritten'`,
		`UPDATE grants SET reason = 'rewritten'`,
		`UPDATE grants SET ended_at = now(), ended_why = 'revoked', features = '{premium}'`,
	} {
		_, err := b.db.Pool.Exec(b.ctx, stmt)
		require.ErrorContains(t, err, "append-only", stmt)
	}
	_, err := grant.Revoke(b.ctx, b.db.Pool, g.ID, "ops", "")
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(b.ctx, `UPDATE grants SET ended_at = now(), ended_why = 'expired'`)
	require.ErrorContains(t, err, "append-only", "an ended grant stays as it ended")
}

// Several processors expire at once: each due grant is expired exactly once.
func TestExpireDueExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	past := time.Now().Add(-time.Minute)
	later := time.Now().Add(time.Hour)
	want := map[string]bool{}
	for i := range 30 {
		until := past.Add(time.Duration(i) * time.Millisecond)
		g := b.give(t, grant.New{Scope: scope.Live(), UserID: "u_" + string(rune('a'+i%5)), Features: []string{"beta"}, Until: &until})
		want[g.ID] = true
	}
	notDue := b.give(t, grant.New{Scope: scope.Live(), UserID: "u_a", Features: []string{"beta"}, Until: &later})
	forever := b.give(t, grant.New{Scope: scope.Live(), UserID: "u_a", Features: []string{"beta"}})

	// Four expiry runners at once, each in its own transactions; assertions stay on the test's
	// goroutine, the runners report what they expired.
	var mu sync.Mutex
	expired := map[string]int{}
	var ended []grant.Grant
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				var gs []grant.Grant
				err := pgx.BeginFunc(b.ctx, b.db.Pool, func(tx pgx.Tx) error {
					var err error
					if gs, err = grant.ExpireDue(b.ctx, tx, 3); err != nil {
						return err
					}
					users := []scope.Key{}
					for _, g := range gs {
						users = append(users, g.User())
					}
					_, err = grant.RefreshUsers(b.ctx, tx, users)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				if len(gs) == 0 {
					return
				}
				mu.Lock()
				for _, g := range gs {
					expired[g.ID]++
				}
				ended = append(ended, gs...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for _, g := range ended {
		require.Equal(t, grant.EndExpired, *g.EndedWhy)
		require.True(t, g.EndedAt.Equal(*g.Until), "ended at its until")
	}
	require.Len(t, expired, len(want))
	for id, n := range expired {
		require.True(t, want[id], id)
		require.Equal(t, 1, n, id)
	}
	u, err := entitlement.GetUser(b.ctx, b.db.Pool, scope.Live().Of("u_a"))
	require.NoError(t, err)
	ids := []string{}
	for _, g := range u.Grants {
		ids = append(ids, g.ID)
	}
	require.ElementsMatch(t, []string{notDue.ID, forever.ID}, ids)
	_, err = entitlement.GetUser(b.ctx, b.db.Pool, scope.Live().Of("u_b"))
	require.ErrorIs(t, err, entitlement.ErrNotFound, "a user whose only grant expired has no answer left")

	next, ok, err := grant.NextDue(b.ctx, b.db.Pool)
	require.NoError(t, err)
	require.True(t, ok)
	require.WithinDuration(t, later, next, time.Millisecond)
	var logged int
	require.NoError(t, b.db.Pool.QueryRow(b.ctx, `SELECT count(*) FROM grant_log WHERE action = 'expired'`).Scan(&logged))
	require.Equal(t, len(want), logged)
}

// The notifications are made from the rows RefreshUsers returns, not from a second read: they
// must be exactly what GetUsers reads back, lists never nil, times in UTC, updated_at the row's.
func TestRefreshUsersReturnsTheRowsAsRead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	live, test := scope.Live(), scope.Scope{Account: "acct_1"}
	end := time.Unix(1767000000, 0).UTC()
	b.inTx(t, func(tx pgx.Tx) {
		require.NoError(t, entitlement.SaveCustomers(b.ctx, tx, []entitlement.Customer{
			{Scope: live, CustomerID: "cus_a", UserID: "u_1", Premium: true, Status: "active", Features: []string{"pro"},
				Limits: map[string]int64{"seats": 3}, LastEventID: "evt_a", LastEventCreated: time.Unix(1765000000, 0).UTC(),
				Subscriptions: []entitlement.Subscription{{ID: "sub_a", CustomerID: "cus_a", Status: "active",
					PriceIDs: []string{"price_1"}, ProductIDs: []string{"prod_1"}, CurrentPeriodEnd: &end}}},
			{Scope: live, CustomerID: "cus_b", UserID: "u_1", Status: "canceled", LastEventID: "evt_b",
				LastEventCreated: time.Unix(1765000001, 0).UTC(), Subscriptions: []entitlement.Subscription{{ID: "sub_b", CustomerID: "cus_b"}}},
			{Scope: test, CustomerID: "cus_c", UserID: "u_2", Status: "none", LastEventID: "evt_c", LastEventCreated: time.Unix(1765000002, 0).UTC()},
		}))
		// A grant with limits and no features, and one with features and no limits.
		for _, n := range []grant.New{
			{Scope: live, UserID: "u_1", Features: []string{}, Limits: map[string]int64{"projects": 5}, Reason: "comp", By: "ops"},
			{Scope: live, UserID: "u_3", Features: []string{"export"}, Limits: map[string]int64{}, Reason: "partner", By: "ops"},
		} {
			_, err := grant.Create(b.ctx, tx, n)
			require.NoError(t, err)
		}
		users := []scope.Key{live.Of("u_1"), live.Of("u_3"), live.Of("u_gone"), test.Of("u_2")}
		wrote, err := grant.RefreshUsers(b.ctx, tx, users)
		require.NoError(t, err)
		read, err := entitlement.GetUsers(b.ctx, tx, users)
		require.NoError(t, err)
		require.Len(t, read, 3, "u_gone has no row")
		require.Equal(t, read, wrote)
	})
}
