package session

import (
	"sync"
	"time"
)

// Throttle counts failed logins per client address: past MaxFailures within Window, the address
// is refused (429, with the Retry-After it returns) until the window that began with its first
// failure has passed. It is safe for concurrent use and holds at most maxAddresses addresses.
//
// Behind a reverse proxy every client has the proxy's address: the throttle then guards the
// console as a whole (a guesser locks out everyone for a window, never for longer).
type Throttle struct {
	MaxFailures int
	Window      time.Duration

	mu    sync.Mutex
	fails map[string]*failures
}

type failures struct {
	since time.Time
	n     int
}

// maxAddresses bounds the memory of the throttle; past it, expired windows are dropped, then the
// new address is not tracked (a flood of addresses cannot exhaust memory).
const maxAddresses = 100_000

// NewThrottle is a Throttle of maxFailures per window.
func NewThrottle(maxFailures int, window time.Duration) *Throttle {
	return &Throttle{MaxFailures: maxFailures, Window: window, fails: map[string]*failures{}}
}

// Allow reports whether addr may try to log in at now; when not, how long it must wait.
func (t *Throttle) Allow(addr string, now time.Time) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.fails[addr]
	if !ok {
		return 0, true
	}
	if now.Sub(f.since) >= t.Window {
		delete(t.fails, addr)
		return 0, true
	}
	if f.n >= t.MaxFailures {
		return f.since.Add(t.Window).Sub(now), false
	}
	return 0, true
}

// Fail counts a failed login of addr at now.
func (t *Throttle) Fail(addr string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.fails[addr]
	if ok && now.Sub(f.since) >= t.Window {
		ok = false
	}
	if !ok {
		if len(t.fails) >= maxAddresses {
			for a, g := range t.fails {
				if now.Sub(g.since) >= t.Window {
					delete(t.fails, a)
				}
			}
			if len(t.fails) >= maxAddresses {
				return
			}
		}
		f = &failures{since: now}
		t.fails[addr] = f
	}
	f.n++
}

// Succeed forgets addr's failures.
func (t *Throttle) Succeed(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fails, addr)
}
