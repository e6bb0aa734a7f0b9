package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tollgate/tollgate/pkg/entitlement"
)

// Read your writes: ?wait_for=<evt_… or cs_…>&timeout=5s holds an answer until the
// read model includes that event or Checkout Session for the user or customer asked about. A
// waiter wakes on the read model's change notifications (the LISTEN session the cache already
// holds) and checks again; nothing polls Postgres.
const (
	defaultWaitTimeout = 5 * time.Second
	maxWaitTimeout     = 10 * time.Second
	// defaultMaxWaiters bounds the requests waiting at once; past it, 503 overloaded.
	defaultMaxWaiters = 1000
	// waitHeader says an answer was given because the wait timed out.
	waitHeader = "Tollgate-Wait"
	// waitPoll is how often a waiter checks again while no notification can wake it.
	waitPoll = 100 * time.Millisecond
)

// Errors of ?wait_for=; errorHandler maps them.
var (
	errInvalidParameter = errors.New("invalid parameter")
	errOverloaded       = errors.New("too many requests are waiting")
)

// markReader says whether a mark was applied for a key (entitlement.Applied over the pool).
type markReader interface {
	applied(ctx context.Context, id string, k key) (bool, error)
}

type dbMarks struct{ q entitlement.Querier }

func (m dbMarks) applied(ctx context.Context, id string, k key) (bool, error) {
	return entitlement.Applied(ctx, m.q, id, k.user, k.scope.Of(k.id))
}

// waiters are the requests waiting for a key's next change notification.
type waiters struct {
	marks markReader
	max   int64
	// fresh is the cache the answers are served from: while it is not notified nothing wakes a
	// waiter (each polls), and a wait that found its mark drops the key from it.
	fresh freshness
	poll  time.Duration
	n     atomic.Int64
	mu    sync.Mutex
	byKey map[key][]chan struct{}
}

// freshness is what the waiters need of the cache.
type freshness interface {
	notified() bool
	invalidate(k key)
}

func newWaiters(marks markReader, maxWaiters int, fresh freshness) *waiters {
	return &waiters{marks: marks, max: int64(maxWaiters), fresh: fresh, poll: waitPoll,
		byKey: make(map[key][]chan struct{})}
}

// watch registers for the next notification of k; cancel forgets it.
func (w *waiters) watch(k key) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	w.byKey[k] = append(w.byKey[k], ch)
	w.mu.Unlock()
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		list := w.byKey[k]
		for i, c := range list {
			if c == ch {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(w.byKey, k)
		} else {
			w.byKey[k] = list
		}
	}
}

// wake wakes the waiters of k (the notify listener calls it after invalidating the cache).
func (w *waiters) wake(k key) {
	if w == nil {
		return
	}
	w.mu.Lock()
	list := w.byKey[k]
	delete(w.byKey, k)
	w.mu.Unlock()
	for _, c := range list {
		close(c)
	}
}

// wakeAll wakes every waiter (a flush).
func (w *waiters) wakeAll() {
	if w == nil {
		return
	}
	w.mu.Lock()
	all := w.byKey
	w.byKey = make(map[key][]chan struct{})
	w.mu.Unlock()
	for _, list := range all {
		for _, c := range list {
			close(c)
		}
	}
}

// waitParams reads ?wait_for= and ?timeout=; ok false without wait_for.
func waitParams(c echo.Context) (id string, timeout time.Duration, ok bool, err error) {
	id = c.QueryParam("wait_for")
	t := c.QueryParam("timeout")
	if id == "" {
		if t != "" {
			return "", 0, false, fmt.Errorf("%w: timeout is only valid with wait_for", errInvalidParameter)
		}
		return "", 0, false, nil
	}
	known := strings.HasPrefix(id, "evt_") || strings.HasPrefix(id, "cs_")
	if !known || len(id) > maxIDLength || !printableID(id) {
		return "", 0, false, fmt.Errorf("%w: wait_for must be an event id (evt_…) or a Checkout Session id (cs_…)", errInvalidParameter)
	}
	timeout = defaultWaitTimeout
	if t != "" {
		d, perr := time.ParseDuration(t)
		if perr != nil || d <= 0 || d > maxWaitTimeout {
			return "", 0, false, fmt.Errorf("%w: timeout must be a duration such as 5s, at most %s", errInvalidParameter, maxWaitTimeout)
		}
		timeout = d
	}
	return id, timeout, true, nil
}

func printableID(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// waitFor is the handlers' hook: with ?wait_for= it returns once the read model includes the
// event or Checkout Session for k, or after the timeout (then with the header Tollgate-Wait:
// timeout); the handler answers as usual afterwards. Without wait_for it returns at once.
func (s *server) waitFor(c echo.Context, k key) error {
	id, timeout, ok, err := waitParams(c)
	if err != nil || !ok {
		return err
	}
	w := s.waits
	if w.n.Add(1) > w.max {
		w.n.Add(-1)
		c.Response().Header().Set("Retry-After", "1")
		return errOverloaded
	}
	defer w.n.Add(-1)
	ctx, cancel := context.WithTimeout(c.Request().Context(), timeout)
	defer cancel()
	for {
		// WARNING: watch before checking: a change committed between the check and the watch
		// would otherwise go unnoticed until the timeout.
		ch, forget := w.watch(k)
		polling := !w.fresh.notified()
		done, err := w.marks.applied(ctx, id, k)
		if err == nil && done {
			forget()
			// WARNING: the mark can be seen before the notification that drops the key's old
			// answer arrives (or, in mode max-age, before the entry expires): read it again.
			w.fresh.invalidate(k)
			return nil
		}
		var tick <-chan time.Time
		if polling {
			tick = time.After(w.poll)
		}
		select {
		case <-ch:
		case <-tick:
			forget()
		case <-ctx.Done():
			forget()
			if c.Request().Context().Err() != nil {
				return c.Request().Context().Err()
			}
			c.Response().Header().Set(waitHeader, "timeout")
			return nil
		}
	}
}

// classifyWait maps the errors of wait_for; ok false for any other error.
func classifyWait(err error) (status int, code, message string, ok bool) {
	switch {
	case errors.Is(err, errInvalidParameter):
		return http.StatusBadRequest, "invalid_parameter", err.Error(), true
	case errors.Is(err, errOverloaded):
		return http.StatusServiceUnavailable, "overloaded", "too many requests wait_for at once; retry", true
	}
	return 0, "", "", false
}
