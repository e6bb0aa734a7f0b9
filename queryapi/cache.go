package main

import (
	"context"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// reader answers for a key. dbReader asks Postgres; cache answers from memory in front of one.
type reader interface {
	read(ctx context.Context, k key) (*answer, error)
}

const cacheShards = 64

// cache keeps answers (found and not found alike) in memory, in front of next.
//
// Freshness: the read model's triggers notify every committed change (migrations/000003) and
// notifyListener calls invalidate with its key. Should a notification be lost, an entry still
// expires maxAge after the read that produced it started, so no answer is older than maxAge.
// The cache serves only while the LISTEN session is up (setListening): while it is down every
// read goes to Postgres, and both losing and regaining the session drop every entry.
//
// Keys in use are refreshed ahead of their expiry, in the background, so they never make a
// caller wait for Postgres; only a key unused for maxAge is read while its caller waits.
//
// Races: a read that started before an invalidation of its shard must not store its (possibly
// older) answer after it. Each shard counts its invalidations (gen); a read stores its answer
// only if the count did not move while it ran. Concurrent misses of one key share one read.
type cache struct {
	next     reader
	maxAge   time.Duration
	perShard int
	seed     maphash.Seed
	enabled  atomic.Bool
	metrics  *metrics
	loads    sync.WaitGroup // reads in flight, so close can wait before the pool goes
	shards   [cacheShards]shard
}

type shard struct {
	mu      sync.Mutex
	gen     uint64
	entries map[key]cacheEntry
	calls   map[key]*call
}

type cacheEntry struct {
	a       *answer
	expires time.Time // never served from this instant on
	refresh time.Time // from this instant on, a hit also starts a refresh
}

// call is one read in flight; done is closed once a and err are set.
type call struct {
	done chan struct{}
	a    *answer
	err  error
}

func newCache(next reader, maxAge time.Duration, maxEntries int, m *metrics) *cache {
	c := &cache{next: next, maxAge: maxAge, perShard: max(1, maxEntries/cacheShards), seed: maphash.MakeSeed(), metrics: m}
	for i := range c.shards {
		c.shards[i].entries = make(map[key]cacheEntry)
		c.shards[i].calls = make(map[key]*call)
	}
	return c
}

func (c *cache) shard(k key) *shard {
	h := maphash.String(c.seed, k.id)
	if k.user {
		h = ^h
	}
	return &c.shards[h%cacheShards]
}

// read answers from memory when it can, else from next. Waiting for a shared read ends with ctx;
// the read itself runs on (bounded by next's own timeout) for whoever else waits on it.
func (c *cache) read(ctx context.Context, k key) (*answer, error) {
	s := c.shard(k)
	now := time.Now()
	s.mu.Lock()
	if e, ok := s.entries[k]; ok {
		if now.Before(e.expires) {
			if now.After(e.refresh) && s.calls[k] == nil {
				// Refresh ahead: one read in the background while this entry is still served, so
				// a key in use never makes its callers wait for Postgres.
				c.start(ctx, s, k)
				c.metrics.cacheRefreshes.Inc()
			}
			s.mu.Unlock()
			c.metrics.cacheHits.Inc()
			return e.a, nil
		}
		delete(s.entries, k)
	}
	cl, ok := s.calls[k]
	if !ok {
		cl = c.start(ctx, s, k)
	}
	s.mu.Unlock()
	c.metrics.cacheMisses.Inc()

	select {
	case <-cl.done:
		return cl.a, cl.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// start begins a read of k shared by whoever asks for k until it ends. Called with s.mu held.
// The read does not end with ctx (other callers may wait on it); next bounds it.
func (c *cache) start(ctx context.Context, s *shard, k key) *call {
	cl := &call{done: make(chan struct{})}
	s.calls[k] = cl
	c.loads.Add(1)
	go c.load(context.WithoutCancel(ctx), s, k, cl, s.gen, c.enabled.Load())
	return cl
}

// load reads k from next and stores the answer unless the shard was invalidated meanwhile or the
// cache was not serving when the read began.
func (c *cache) load(ctx context.Context, s *shard, k key, cl *call, gen uint64, enabled bool) {
	defer c.loads.Done()
	started := time.Now()
	cl.a, cl.err = c.next.read(ctx, k)
	s.mu.Lock()
	if s.calls[k] == cl {
		delete(s.calls, k)
	}
	if cl.err == nil && enabled && s.gen == gen && c.enabled.Load() {
		if _, renew := s.entries[k]; !renew && len(s.entries) >= c.perShard {
			for victim := range s.entries { // map order is random: a random victim
				delete(s.entries, victim)
				break
			}
		}
		// Refresh somewhere in the third quarter of the entry's life: late enough to keep the
		// extra reads few, early enough for a slow read to finish before the entry expires, and
		// spread out, so keys loaded together do not go back to Postgres together.
		refresh := c.maxAge/2 + rand.N(c.maxAge/4+1)
		s.entries[k] = cacheEntry{a: cl.a, expires: started.Add(c.maxAge), refresh: started.Add(refresh)}
	}
	s.mu.Unlock()
	close(cl.done)
}

// invalidate drops k: the next read of k goes to Postgres, and a read of the same shard that
// is in flight will not store its answer.
func (c *cache) invalidate(k key) {
	s := c.shard(k)
	s.mu.Lock()
	s.gen++
	delete(s.entries, k)
	delete(s.calls, k)
	s.mu.Unlock()
	c.metrics.cacheInvalidations.Inc()
}

// flush drops every entry and stops every read in flight from storing its answer.
func (c *cache) flush() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.gen++
		clear(s.entries)
		clear(s.calls)
		s.mu.Unlock()
	}
	c.metrics.cacheFlushes.Inc()
}

// setListening turns the cache on once a LISTEN session is established and off when it is
// lost. Either way everything is dropped: notifications may have been missed in between.
func (c *cache) setListening(on bool) {
	if on {
		// WARNING: flush before enabling. A read that began before LISTEN took effect may hold an
		// answer no notification will ever correct; the flush keeps it out.
		c.flush()
		c.enabled.Store(true)
		c.metrics.cacheListening.Set(1)
		return
	}
	c.enabled.Store(false)
	c.flush()
	c.metrics.cacheListening.Set(0)
}

// listening reports whether the cache serves from memory.
func (c *cache) listening() bool { return c.enabled.Load() }

// wait returns once no read is in flight.
func (c *cache) wait() { c.loads.Wait() }

// len is the number of entries held.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}
