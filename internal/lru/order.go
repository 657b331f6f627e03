package lru

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// Order is a least-recently-used set of entries under one lock, bounded in
// bytes and, optionally, in entries: one shard of Cache, and the whole of the
// cache package's in-process tier. Its zero value is not usable: Init first.
type Order[K comparable, V any] struct {
	mu         sync.Mutex
	order      list.List // front: most recently used; elements hold *entry
	items      map[K]*list.Element
	used       int64
	maxBytes   int64
	maxEntries int // 0: bounded in bytes only

	// hot is the entry last put at the front, hotAt the count of moves to
	// the front then (moves), and count the number of entries; all are
	// written under mu. Get returns hot without taking mu while fewer
	// moves than half the entries happened since: it is then still in the
	// front half of the order, far from eviction, and moving it again
	// changes nothing that matters. So a user's run of requests reads the
	// order without writing to it: two cores taking one lock in turn for
	// the same entry cost more than the lookup itself.
	hot   atomic.Pointer[entry[K, V]]
	hotAt atomic.Uint64
	moves atomic.Uint64
	count atomic.Int64
}

// entry is never changed once in an Order (Get may read it without the
// lock): a new value is a new entry.
type entry[K comparable, V any] struct {
	key   K
	value V
	size  int64
}

// Init makes o empty, holding at most maxBytes and, when maxEntries > 0, at
// most maxEntries entries. Not safe while o is in use.
func (o *Order[K, V]) Init(maxBytes int64, maxEntries int) {
	o.items = map[K]*list.Element{}
	o.maxBytes, o.maxEntries = maxBytes, maxEntries
	o.clearLocked()
}

// Get returns the value of k and marks it recently used.
func (o *Order[K, V]) Get(k K) (V, bool) {
	if e := o.hot.Load(); e != nil && e.key == k && o.moves.Load()-o.hotAt.Load() <= uint64(o.count.Load())/2 {
		return e.value, true
	}
	o.mu.Lock()
	el, ok := o.items[k]
	if !ok {
		o.mu.Unlock()
		var zero V
		return zero, false
	}
	o.toFront(el)
	v := el.Value.(*entry[K, V]).value
	o.mu.Unlock()
	return v, true
}

// toFront moves el to the front and makes its entry the hot one. Under mu.
func (o *Order[K, V]) toFront(el *list.Element) {
	o.order.MoveToFront(el)
	o.hot.Store(el.Value.(*entry[K, V]))
	o.hotAt.Store(o.moves.Add(1))
}

// Put stores v under k at the given size, evicting the least recently used
// entries to stay within the bounds, and reports whether v went in. admit,
// when not nil, is asked first, under the lock, with the value k holds (found
// false when none): false leaves k as it was (a newer value stays, or the
// caller learned that v is already outdated). An entry larger than the byte
// bound is not kept, and drops the value k held: a newer value exists.
func (o *Order[K, V]) Put(k K, v V, size int64, admit func(cur V, found bool) bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	el, found := o.items[k]
	if admit != nil {
		var cur V
		if found {
			cur = el.Value.(*entry[K, V]).value
		}
		if !admit(cur, found) {
			return false
		}
	}
	if size > o.maxBytes {
		if found {
			o.removeLocked(el)
		}
		return false
	}
	e := &entry[K, V]{key: k, value: v, size: size}
	if found {
		o.used += size - el.Value.(*entry[K, V]).size
		el.Value = e
		o.toFront(el)
	} else {
		el = o.order.PushFront(e)
		o.items[k] = el
		o.used += size
		o.toFront(el)
	}
	for o.used > o.maxBytes || (o.maxEntries > 0 && len(o.items) > o.maxEntries) {
		o.removeLocked(o.order.Back())
	}
	o.count.Store(int64(len(o.items)))
	return true
}

// Remove forgets k.
func (o *Order[K, V]) Remove(k K) {
	o.mu.Lock()
	if el, ok := o.items[k]; ok {
		o.removeLocked(el)
	}
	o.mu.Unlock()
}

// removeLocked drops el; a Get that starts after it returns cannot see the
// entry, hot included.
func (o *Order[K, V]) removeLocked(el *list.Element) {
	e := el.Value.(*entry[K, V])
	if o.hot.Load() == e {
		o.hot.Store(nil)
	}
	delete(o.items, e.key)
	o.order.Remove(el)
	o.used -= e.size
	o.count.Store(int64(len(o.items)))
}

// Flush forgets every entry; a Get that starts after it returns sees none.
func (o *Order[K, V]) Flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clearLocked()
}

func (o *Order[K, V]) clearLocked() {
	o.order.Init()
	clear(o.items)
	o.used = 0
	o.hot.Store(nil) // a Get after the flush must not find the entry last used
	o.count.Store(0)
}

// Size is the number of entries and the sum of their sizes.
func (o *Order[K, V]) Size() (entries int, bytes int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items), o.used
}
