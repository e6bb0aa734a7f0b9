package client

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for the cache's TTL.
type fakeClock struct{ t time.Time }

func (f *fakeClock) now() time.Time { return f.t }

func newTestCache(ttl time.Duration, maxEntries int) (*ttlCache, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := newTTLCache(ttl, maxEntries)
	c.now = clk.now
	return c, clk
}

func TestTTLCacheExpires(t *testing.T) {
	t.Parallel()
	c, clk := newTestCache(time.Second, 10)
	c.put("u_1", Entitlement{UserID: "u_1", Premium: true}, nil)

	clk.t = clk.t.Add(999 * time.Millisecond)
	it, ok := c.get("u_1")
	require.True(t, ok)
	require.NoError(t, it.err)
	require.True(t, it.e.Premium)

	clk.t = clk.t.Add(time.Millisecond)
	_, ok = c.get("u_1")
	require.False(t, ok, "an answer is not served past its ttl")
	require.Zero(t, c.len(), "the expired answer is dropped")
}

func TestTTLCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(time.Hour, 2)
	c.put("a", Entitlement{UserID: "a"}, nil)
	c.put("b", Entitlement{UserID: "b"}, nil)
	_, ok := c.get("a") // a is now the most recently used
	require.True(t, ok)
	c.put("c", Entitlement{UserID: "c"}, nil)

	require.Equal(t, 2, c.len())
	_, ok = c.get("b")
	require.False(t, ok, "b was the least recently used")
	_, ok = c.get("a")
	require.True(t, ok)
	_, ok = c.get("c")
	require.True(t, ok)
}

func TestTTLCacheKeepsNotFound(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(time.Hour, 2)
	c.put("u_x", Entitlement{}, &Error{StatusCode: 404, Code: "not_found"})
	it, ok := c.get("u_x")
	require.True(t, ok)
	require.ErrorIs(t, it.err, ErrNotFound)
}

func TestTTLCacheAnswersAreCopies(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(time.Hour, 2)
	c.put("u_1", Entitlement{Features: []string{"pro"}, Subscriptions: []Subscription{{PriceIDs: []string{"price_1"}}}}, nil)
	it, _ := c.get("u_1")
	it.e.Features[0] = "changed"
	it.e.Subscriptions[0].PriceIDs[0] = "changed"
	again, _ := c.get("u_1")
	require.Equal(t, []string{"pro"}, again.e.Features)
	require.Equal(t, []string{"price_1"}, again.e.Subscriptions[0].PriceIDs)
}

func TestErrorMatchesSentinels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		status       int
		notFound     bool
		unauthorized bool
		outage       bool
	}{
		{"404", 404, true, false, false},
		{"401", 401, false, true, false},
		{"400", 400, false, false, false},
		{"500", 500, false, false, true},
		{"503", 503, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := error(&Error{StatusCode: tt.status})
			require.Equal(t, tt.notFound, errors.Is(err, ErrNotFound))
			require.Equal(t, tt.unauthorized, errors.Is(err, ErrUnauthorized))
			require.Equal(t, tt.outage, outage(err))
		})
	}
}
