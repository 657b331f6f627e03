// Package lru is a concurrent least-recently-used cache bounded in bytes, for
// the runner's per-process caches (proven logins, token verdicts, signed
// assertions): each must hold its budget whatever the number of users, so a
// flood of distinct values evicts old ones instead of growing the process.
package lru

import (
	"container/list"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Cache maps K to V. Sizes are what the caller says an entry costs; the sum
// over all entries never exceeds the budget given to New.
type Cache[K comparable, V any] struct {
	seed   maphash.Seed
	shards []shard[K, V]
}

type shard[K comparable, V any] struct {
	mu       sync.Mutex
	order    list.List // front: most recently used; elements hold *entry
	items    map[K]*list.Element
	used     int64
	maxBytes int64

	// hot is the entry last put at the front, hotAt the count of moves to
	// the front then (moves), and count the number of entries; all are
	// written under mu. Get returns hot without taking mu while fewer
	// moves than half the entries happened since: it is then still in the
	// front half of the order, far from eviction, and moving it again
	// changes nothing that matters. So a user's run of requests reads the
	// shard without writing to it: two cores taking one lock in turn for
	// the same entry cost more than the lookup itself.
	hot   atomic.Pointer[entry[K, V]]
	hotAt atomic.Uint64
	moves atomic.Uint64
	count atomic.Int64
}

// entry is never changed once in the cache (Get may read it without the
// lock): a new value is a new entry.
type entry[K comparable, V any] struct {
	key   K
	value V
	size  int64
}

// shardCount spreads lock contention; a power of two.
const shardCount = 16

// New makes a cache holding at most maxBytes (rounded down to a multiple of
// the shard count). maxBytes <= 0 makes a cache that keeps nothing.
func New[K comparable, V any](maxBytes int64) *Cache[K, V] {
	c := &Cache[K, V]{seed: maphash.MakeSeed(), shards: make([]shard[K, V], shardCount)}
	for i := range c.shards {
		c.shards[i].items = map[K]*list.Element{}
		c.shards[i].maxBytes = maxBytes / shardCount
	}
	return c
}

func (c *Cache[K, V]) shard(k K) *shard[K, V] {
	return &c.shards[maphash.Comparable(c.seed, k)&(shardCount-1)]
}

// Get returns the value of k and marks it recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	s := c.shard(k)
	if e := s.hot.Load(); e != nil && e.key == k && s.moves.Load()-s.hotAt.Load() <= uint64(s.count.Load())/2 {
		return e.value, true
	}
	s.mu.Lock()
	el, ok := s.items[k]
	if !ok {
		s.mu.Unlock()
		var zero V
		return zero, false
	}
	s.toFront(el)
	v := el.Value.(*entry[K, V]).value
	s.mu.Unlock()
	return v, true
}

// toFront moves el to the front and makes its entry the hot one. Under mu.
func (s *shard[K, V]) toFront(el *list.Element) {
	s.order.MoveToFront(el)
	s.hot.Store(el.Value.(*entry[K, V]))
	s.hotAt.Store(s.moves.Add(1))
}

// Add stores v under k at the given size, evicting the least recently used
// entries to stay within budget. An entry larger than a shard's budget is not
// kept (and replaces nothing).
func (c *Cache[K, V]) Add(k K, v V, size int64) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if size > s.maxBytes {
		if el, ok := s.items[k]; ok {
			s.removeLocked(el)
		}
		return
	}
	if el, ok := s.items[k]; ok {
		s.used += size - el.Value.(*entry[K, V]).size
		el.Value = &entry[K, V]{key: k, value: v, size: size}
		s.toFront(el)
	} else {
		el := s.order.PushFront(&entry[K, V]{key: k, value: v, size: size})
		s.items[k] = el
		s.used += size
		s.toFront(el)
	}
	for s.used > s.maxBytes {
		s.removeLocked(s.order.Back())
	}
	s.count.Store(int64(len(s.items)))
}

// Remove forgets k.
func (c *Cache[K, V]) Remove(k K) {
	s := c.shard(k)
	s.mu.Lock()
	if el, ok := s.items[k]; ok {
		s.removeLocked(el)
	}
	s.mu.Unlock()
}

// removeLocked drops el; a Get that starts after it returns cannot see the
// entry, hot included.
func (s *shard[K, V]) removeLocked(el *list.Element) {
	e := el.Value.(*entry[K, V])
	if s.hot.Load() == e {
		s.hot.Store(nil)
	}
	delete(s.items, e.key)
	s.order.Remove(el)
	s.used -= e.size
	s.count.Store(int64(len(s.items)))
}

// Len is the number of entries.
func (c *Cache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].items)
		c.shards[i].mu.Unlock()
	}
	return n
}

// Bytes is the sum of the sizes of the entries.
func (c *Cache[K, V]) Bytes() int64 {
	var n int64
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += c.shards[i].used
		c.shards[i].mu.Unlock()
	}
	return n
}
