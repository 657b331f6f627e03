// Package lru is a concurrent least-recently-used cache bounded in bytes, for
// the runner's per-process caches (proven logins, token verdicts, signed
// assertions): each must hold its budget whatever the number of users, so a
// flood of distinct values evicts old ones instead of growing the process.
// Its shard, Order, is also the cache package's in-process tier (bounded in
// entries too, and admitting a value only when it is newer).
package lru

import "hash/maphash"

// Cache maps K to V. Sizes are what the caller says an entry costs; the sum
// over all entries never exceeds the budget given to New.
type Cache[K comparable, V any] struct {
	seed   maphash.Seed
	shards []Order[K, V]
}

// shardCount spreads lock contention; a power of two.
const shardCount = 16

// New makes a cache holding at most maxBytes (rounded down to a multiple of
// the shard count). maxBytes <= 0 makes a cache that keeps nothing.
func New[K comparable, V any](maxBytes int64) *Cache[K, V] {
	c := &Cache[K, V]{seed: maphash.MakeSeed(), shards: make([]Order[K, V], shardCount)}
	for i := range c.shards {
		c.shards[i].Init(maxBytes/shardCount, 0)
	}
	return c
}

func (c *Cache[K, V]) shard(k K) *Order[K, V] {
	return &c.shards[maphash.Comparable(c.seed, k)&(shardCount-1)]
}

// Get returns the value of k and marks it recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) { return c.shard(k).Get(k) }

// Add stores v under k at the given size, evicting the least recently used
// entries to stay within budget. An entry larger than a shard's budget is not
// kept (and drops the value k held).
func (c *Cache[K, V]) Add(k K, v V, size int64) { c.shard(k).Put(k, v, size, nil) }

// Remove forgets k.
func (c *Cache[K, V]) Remove(k K) { c.shard(k).Remove(k) }

// Len is the number of entries.
func (c *Cache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		entries, _ := c.shards[i].Size()
		n += entries
	}
	return n
}

// Bytes is the sum of the sizes of the entries.
func (c *Cache[K, V]) Bytes() int64 {
	var n int64
	for i := range c.shards {
		_, bytes := c.shards[i].Size()
		n += bytes
	}
	return n
}
