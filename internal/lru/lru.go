// Package lru is a concurrent least-recently-used cache bounded in bytes, for
// the runner's per-process caches (proven logins, token verdicts, signed
// assertions): each must hold its budget whatever the number of users, so a
// flood of distinct values evicts old ones instead of growing the process.
package lru

import (
	"container/list"
	"hash/maphash"
	"sync"
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
}

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
	s.mu.Lock()
	el, ok := s.items[k]
	if !ok {
		s.mu.Unlock()
		var zero V
		return zero, false
	}
	s.order.MoveToFront(el)
	v := el.Value.(*entry[K, V]).value
	s.mu.Unlock()
	return v, true
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
		e := el.Value.(*entry[K, V])
		s.used += size - e.size
		e.value, e.size = v, size
		s.order.MoveToFront(el)
	} else {
		s.items[k] = s.order.PushFront(&entry[K, V]{key: k, value: v, size: size})
		s.used += size
	}
	for s.used > s.maxBytes {
		s.removeLocked(s.order.Back())
	}
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

func (s *shard[K, V]) removeLocked(el *list.Element) {
	e := el.Value.(*entry[K, V])
	delete(s.items, e.key)
	s.order.Remove(el)
	s.used -= e.size
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
