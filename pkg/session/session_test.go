package session_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/session"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

func TestSessionLifetime(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	token := sha256.Sum256([]byte("a-token-of-sixteen-chars"))
	gone := sha256.Sum256([]byte("a-token-removed-from-the-list"))
	valid := func(d [sha256.Size]byte) bool { return d == token }
	t0 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

	id, s, err := session.Create(ctx, db.Pool, "alice", token, t0)
	require.NoError(t, err)
	require.Len(t, id, 43)
	require.NotContains(t, id, "a-token")
	var stored []byte
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT id_hash FROM console_sessions`).Scan(&stored))
	require.NotContains(t, string(stored), id, "the table keeps a hash of the id")

	got, err := session.Lookup(ctx, db.Pool, id, t0.Add(50*time.Minute), valid)
	require.NoError(t, err)
	require.Equal(t, "alice", got.Name)
	require.Equal(t, s.CSRF, got.CSRF)
	// Used at 50 min: still open at 1 h 40 min, then idle for an hour.
	_, err = session.Lookup(ctx, db.Pool, id, t0.Add(100*time.Minute), valid)
	require.NoError(t, err)
	_, err = session.Lookup(ctx, db.Pool, id, t0.Add(160*time.Minute), valid)
	require.ErrorIs(t, err, session.ErrNoSession, "an hour unused")

	_, err = session.Lookup(ctx, db.Pool, "forged", t0, valid)
	require.ErrorIs(t, err, session.ErrNoSession)

	// 12 hours, however busy.
	id, _, err = session.Create(ctx, db.Pool, "alice", token, t0)
	require.NoError(t, err)
	for m := 30; m < 12*60; m += 30 {
		_, err = session.Lookup(ctx, db.Pool, id, t0.Add(time.Duration(m)*time.Minute), valid)
		require.NoError(t, err)
	}
	_, err = session.Lookup(ctx, db.Pool, id, t0.Add(12*time.Hour), valid)
	require.ErrorIs(t, err, session.ErrNoSession, "12 hours after login")

	// Logout.
	id, _, err = session.Create(ctx, db.Pool, "alice", token, t0)
	require.NoError(t, err)
	require.NoError(t, session.End(ctx, db.Pool, id, t0.Add(time.Minute)))
	_, err = session.Lookup(ctx, db.Pool, id, t0.Add(2*time.Minute), valid)
	require.ErrorIs(t, err, session.ErrNoSession, "after logout")

	// The token left ADMIN_TOKENS.
	id, _, err = session.Create(ctx, db.Pool, "old", gone, t0)
	require.NoError(t, err)
	_, err = session.Lookup(ctx, db.Pool, id, t0.Add(time.Minute), valid)
	require.ErrorIs(t, err, session.ErrNoSession, "its token is no longer configured")

	n, err := session.Prune(ctx, db.Pool, t0.Add(13*time.Hour))
	require.NoError(t, err)
	require.Equal(t, int64(4), n)
	require.NotContains(t, id, "=", "base64url without padding")
}

func TestThrottle(t *testing.T) {
	t.Parallel()
	th := session.NewThrottle(3, 10*time.Minute)
	t0 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	for i := range 3 {
		_, ok := th.Allow("10.0.0.1", t0.Add(time.Duration(i)*time.Second))
		require.True(t, ok)
		th.Fail("10.0.0.1", t0.Add(time.Duration(i)*time.Second))
	}
	wait, ok := th.Allow("10.0.0.1", t0.Add(time.Minute))
	require.False(t, ok)
	require.Equal(t, 9*time.Minute, wait)
	_, ok = th.Allow("10.0.0.2", t0.Add(time.Minute))
	require.True(t, ok, "another address")
	_, ok = th.Allow("10.0.0.1", t0.Add(10*time.Minute))
	require.True(t, ok, "after the window")
	th.Fail("10.0.0.3", t0)
	th.Succeed("10.0.0.3")
	_, ok = th.Allow("10.0.0.3", t0)
	require.True(t, ok)
}
