package client

import (
	"container/list"
	"maps"
	"slices"
	"sync"
	"time"
)

// ttlCache keeps answers for ttl, at most max of them, evicting the least recently used.
type ttlCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	order *list.List // front: most recently used; values are *cacheItem
	items map[string]*list.Element
}

type cacheItem struct {
	userID  string
	e       Entitlement
	err     error // nil or an *Error matching ErrNotFound
	expires time.Time
}

func newTTLCache(ttl time.Duration, maxEntries int) *ttlCache {
	return &ttlCache{ttl: ttl, max: maxEntries, now: time.Now, order: list.New(), items: make(map[string]*list.Element)}
}

// get is the live answer for userID, if any. Its entitlement is a copy: callers may change it.
func (c *ttlCache) get(userID string) (cacheItem, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[userID]
	if !ok {
		return cacheItem{}, false
	}
	it, _ := el.Value.(*cacheItem) // the list holds only *cacheItem
	if !c.now().Before(it.expires) {
		c.order.Remove(el)
		delete(c.items, userID)
		return cacheItem{}, false
	}
	c.order.MoveToFront(el)
	out := *it
	out.e = clone(it.e)
	return out, true
}

// put keeps an answer for ttl.
func (c *ttlCache) put(userID string, e Entitlement, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it := &cacheItem{userID: userID, e: clone(e), err: err, expires: c.now().Add(c.ttl)}
	if el, ok := c.items[userID]; ok {
		el.Value = it
		c.order.MoveToFront(el)
		return
	}
	c.items[userID] = c.order.PushFront(it)
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		if it, ok := oldest.Value.(*cacheItem); ok {
			delete(c.items, it.userID)
		}
	}
}

func (c *ttlCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// clone copies the slices of e, so the cache and its callers never share them.
func clone(e Entitlement) Entitlement {
	e.CustomerIDs = slices.Clone(e.CustomerIDs)
	e.Features = slices.Clone(e.Features)
	e.Limits = maps.Clone(e.Limits)
	grants := slices.Clone(e.Grants)
	for i := range grants {
		grants[i].Features, grants[i].Limits = slices.Clone(grants[i].Features), maps.Clone(grants[i].Limits)
	}
	e.Grants = grants
	subs := slices.Clone(e.Subscriptions)
	for i := range subs {
		subs[i].PriceIDs = slices.Clone(subs[i].PriceIDs)
		subs[i].ProductIDs = slices.Clone(subs[i].ProductIDs)
	}
	e.Subscriptions = subs
	return e
}
