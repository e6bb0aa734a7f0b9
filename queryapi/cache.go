package main

import (
	"context"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/pkg/config"
)

// reader answers for a key. dbReader asks Postgres; cache answers from memory in front of one.
type reader interface {
	read(ctx context.Context, k key) (*answer, error)
}

// warmer reads the answers of the most recently changed users and customers, newest first, at
// most limit of each.
type warmer interface {
	recent(ctx context.Context, limit int) ([]keyedAnswer, error)
}

// keyedAnswer is one answer of a warm read.
type keyedAnswer struct {
	k key
	a *answer
}

const (
	cacheShards = 64
	// evictionSample is how many entries an eviction looks at; it drops the one used least
	// recently (sampled LRU, as Redis does): close to LRU, no list to keep. 16 and not 5: with
	// the budget full of warmed entries nobody reads, a sample of 5 held only entries in use 8 %
	// of the time (a fraction 0.6 of them in use: 0.6^5), and the benchmark lost 5 to 8 % of its
	// hits; 0.6^16 is 0.03 %. An eviction happens on a miss only, beside a read of Postgres.
	evictionSample = 16
	// entryOverhead is the memory of an entry besides its JSON: the map slot, the entry and the
	// answer, and the decoded view the fail-open path reads (its strings are about the JSON's
	// size again, counted by entrySize). TestCacheSizeEstimate holds the estimate to the heap.
	entryOverhead = 400
)

// Modes of the cache (QUERYAPI_CACHE_MODE, config.Cache*).
const (
	modeNotify = config.CacheNotify
	modeMaxAge = config.CacheMaxAge
	modeOff    = config.CacheOff
)

// cache keeps answers (found and not found alike) in memory, in front of next, within a budget
// of bytes.
//
// Freshness (mode notify, the default): the read model's triggers notify every committed change
// (migrations/000003) and notifyListener calls invalidate with its key, so an answer is kept
// until it changes. The cache serves only while the LISTEN session is up (setListening): while
// it is down every read goes to Postgres, and both losing and regaining the session drop every
// entry. maxAge (QUERYAPI_CACHE_MAX_AGE, 5 min by default) bounds the one case left: a
// notification lost while the session stayed up. Mode max-age serves without any LISTEN
// session (a hot standby refuses LISTEN): maxAge after the read began is then the bound. Mode
// off keeps nothing.
//
// Keys in use are refreshed ahead of their expiry, in the background, so they never make a
// caller wait for Postgres; only a key unused for maxAge is read while its caller waits.
//
// Memory: every entry is charged an estimate of its heap (entrySize); a shard over its share
// of the budget evicts, by sampled LRU, until it is within it again.
//
// Races: a read that started before an invalidation of its shard must not store its (possibly
// older) answer after it. Each shard counts its invalidations (gen); a read stores its answer
// only if the count did not move while it ran. Concurrent misses of one key share one read.
type cache struct {
	next        reader
	mode        string
	maxAge      time.Duration
	shardBudget int64
	seed        maphash.Seed
	enabled     atomic.Bool
	metrics     *metrics
	loads       sync.WaitGroup // reads in flight, so close can wait before the pool goes
	bytes       atomic.Int64   // sum of the shards' bytes, for /metrics
	entries     atomic.Int64
	shards      [cacheShards]shard
}

type shard struct {
	mu      sync.Mutex
	gen     uint64
	bytes   int64
	entries map[key]*cacheEntry
	calls   map[key]*call
}

type cacheEntry struct {
	a       *answer
	size    int64
	expires time.Time // never served from this instant on
	refresh time.Time // from this instant on, a hit also starts a refresh
	used    int64     // Unix nanoseconds of the last hit (or the store), under the shard's lock
}

// call is one read in flight; done is closed once a and err are set.
type call struct {
	done chan struct{}
	a    *answer
	err  error
}

// newCache is a cache of mode modeNotify (serving once setListening(true) is called), modeMaxAge
// (serving at once) or modeOff, within maxBytes.
func newCache(next reader, mode string, maxAge time.Duration, maxBytes int64, m *metrics) *cache {
	c := &cache{next: next, mode: mode, maxAge: maxAge, shardBudget: max(1, maxBytes/cacheShards),
		seed: maphash.MakeSeed(), metrics: m}
	for i := range c.shards {
		c.shards[i].entries = make(map[key]*cacheEntry)
		c.shards[i].calls = make(map[key]*call)
	}
	if mode == modeMaxAge {
		c.enabled.Store(true)
	}
	return c
}

func (c *cache) shardIndex(k key) int {
	return int(maphash.Comparable(c.seed, k) % cacheShards) //nolint:gosec // below cacheShards
}

// entrySize is the estimate of an entry's heap that the budget is charged.
func entrySize(k key, a *answer) int64 {
	return int64(entryOverhead + 2*len(k.String()) + 2*cap(a.body))
}

// read answers from memory when it can, else from next. Waiting for a shared read ends with ctx;
// the read itself runs on (bounded by next's own timeout) for whoever else waits on it.
func (c *cache) read(ctx context.Context, k key) (*answer, error) {
	s := &c.shards[c.shardIndex(k)]
	now := time.Now()
	s.mu.Lock()
	if e, ok := s.entries[k]; ok {
		if now.Before(e.expires) {
			e.used = now.UnixNano()
			if now.After(e.refresh) && s.calls[k] == nil {
				// Refresh ahead: one read in the background while this entry is still served, so
				// a key in use never makes its callers wait for Postgres.
				c.start(ctx, s, k)
				c.metrics.cacheRefreshes.Inc()
			}
			a := e.a
			s.mu.Unlock()
			c.metrics.cacheHits.Inc()
			return a, nil
		}
		c.remove(s, k, e)
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
		c.put(s, k, cl.a, started)
	}
	s.mu.Unlock()
	close(cl.done)
}

// put stores a read at started of k in s, replacing any entry of k, then evicts until s is
// within its budget. Called with s.mu held.
func (c *cache) put(s *shard, k key, a *answer, started time.Time) {
	if old, ok := s.entries[k]; ok {
		c.remove(s, k, old)
	}
	// Refresh somewhere in the third quarter of the entry's life: late enough to keep the extra
	// reads few, early enough for a slow read to finish before the entry expires, and spread
	// out, so keys loaded together do not go back to Postgres together.
	refresh := c.maxAge/2 + rand.N(c.maxAge/4+1)
	e := &cacheEntry{a: a, size: entrySize(k, a), expires: started.Add(c.maxAge),
		refresh: started.Add(refresh), used: time.Now().UnixNano()}
	s.entries[k] = e
	s.bytes += e.size
	c.bytes.Add(e.size)
	c.entries.Add(1)
	for s.bytes > c.shardBudget && len(s.entries) > 0 {
		// Map iteration starts at a random place: the first few entries are a random sample.
		var victim key
		var ve *cacheEntry
		n := 0
		for vk, v := range s.entries {
			if ve == nil || v.used < ve.used {
				victim, ve = vk, v
			}
			if n++; n == evictionSample {
				break
			}
		}
		c.remove(s, victim, ve)
		c.metrics.cacheEvictions.Inc()
	}
}

// remove drops k's entry e from s. Called with s.mu held.
func (c *cache) remove(s *shard, k key, e *cacheEntry) {
	delete(s.entries, k)
	s.bytes -= e.size
	c.bytes.Add(-e.size)
	c.entries.Add(-1)
}

// invalidate drops k: the next read of k goes to Postgres, and a read of the same shard that
// is in flight will not store its answer.
func (c *cache) invalidate(k key) {
	s := &c.shards[c.shardIndex(k)]
	s.mu.Lock()
	s.gen++
	if e, ok := s.entries[k]; ok {
		c.remove(s, k, e)
	}
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
		c.bytes.Add(-s.bytes)
		c.entries.Add(-int64(len(s.entries)))
		s.bytes = 0
		clear(s.entries)
		clear(s.calls)
		s.mu.Unlock()
	}
	c.metrics.cacheFlushes.Inc()
}

// setListening turns a cache of mode notify on once a LISTEN session is established and off
// when it is lost. Either way everything is dropped: notifications may have been missed in
// between. Other modes do not follow the session.
func (c *cache) setListening(on bool) {
	if c.mode != modeNotify {
		return
	}
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

// notified reports whether change notifications reach the cache now (mode notify, session up).
func (c *cache) notified() bool { return c.mode == modeNotify && c.enabled.Load() }

// state is the cache as /readyz names it: "listening" (mode notify, session up), "max-age"
// (serving without notifications) or "off".
func (c *cache) state() string {
	switch {
	case !c.enabled.Load():
		return "off"
	case c.mode == modeMaxAge:
		return "max-age"
	}
	return "listening"
}

// startWarm fills the cache in the background with the answers of the most recently changed
// users and customers (at most limit of each, newest first), until 90 % of the budget is used.
// It is called once the cache serves (after setListening(true) in mode notify), and stores an
// answer only where no invalidation of its shard happened since the read began, like load.
// Ends with ctx or after timeout; wait waits for it.
func (c *cache) startWarm(ctx context.Context, w warmer, limit int, timeout time.Duration, logger *slog.Logger) {
	if limit <= 0 || !c.enabled.Load() {
		return
	}
	c.loads.Add(1)
	go func() {
		defer c.loads.Done()
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		t0 := time.Now()
		n, err := c.warm(ctx, w, limit)
		if err != nil {
			logger.Warn("could not warm the cache; answers are read from Postgres as they are asked for", "err", err, "stored", n)
			return
		}
		logger.Info("cache warmed", "answers", n, "bytes", c.bytes.Load(), "took", time.Since(t0).String())
	}()
}

func (c *cache) warm(ctx context.Context, w warmer, limit int) (int, error) {
	var gens [cacheShards]uint64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		gens[i] = s.gen
		s.mu.Unlock()
	}
	enabled := c.enabled.Load()
	started := time.Now()
	answers, err := w.recent(ctx, limit)
	if err != nil || !enabled {
		return 0, err
	}
	full := c.shardBudget * cacheShards * 9 / 10
	n := 0
	for _, ka := range answers {
		if c.bytes.Load() >= full {
			break
		}
		i := c.shardIndex(ka.k)
		s := &c.shards[i]
		s.mu.Lock()
		if _, ok := s.entries[ka.k]; !ok && s.gen == gens[i] && c.enabled.Load() {
			c.put(s, ka.k, ka.a, started)
			n++
		}
		s.mu.Unlock()
	}
	return n, nil
}

// wait returns once no read is in flight.
func (c *cache) wait() { c.loads.Wait() }

// len is the number of entries held.
func (c *cache) len() int { return int(c.entries.Load()) }

// size is the estimated bytes the entries hold (the figure the budget bounds).
func (c *cache) size() int64 { return c.bytes.Load() }
