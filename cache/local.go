package cache

import (
	"sync/atomic"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/lru"
)

// localEntry is one value of the in-process tier.
type localEntry struct {
	key      string
	value    []byte
	fetched  time.Time // when the loader produced the value (carried through Redis)
	storedAt time.Time // when this process last stored or confirmed it; LocalTTL counts from here
}

// entryOverhead is what one entry costs besides its key and value bytes: the list element, the
// localEntry it points to, and its share of the map (measured by TestLocalBytesAccounting).
const entryOverhead = 200

// cost is the number of bytes an entry is accounted for. A value read from Redis shares the
// reply's buffer, so its capacity is what stays alive.
func (e *localEntry) cost() int64 {
	return int64(len(e.key)+cap(e.value)) + entryOverhead
}

// local is the in-process tier: an LRU bounded by a number of entries and by bytes. Entries past
// LocalTTL are not dropped: they stay as a fallback for when Redis and the loader both fail, until
// evicted by size, by Retention or by an invalidation. Callers decide what "expired" means.
// A local with maxEntries 0 holds nothing. Entries are never changed once in (lru.Order reads the
// one last used without its lock).
type local struct {
	maxEntries int
	maxBytes   int64
	order      lru.Order[string, *localEntry]
}

func newLocal(maxEntries int, maxBytes int64) *local {
	l := &local{maxEntries: maxEntries, maxBytes: maxBytes}
	l.order.Init(maxBytes, maxEntries)
	return l
}

// get returns a copy of the entry's metadata and its value slice (shared, never modified in place).
func (l *local) get(key string) (localEntry, bool) {
	if e, ok := l.order.Get(key); ok {
		return *e, true
	}
	return localEntry{}, false
}

// putIfGen stores e like put, but only while *gen still equals want (no invalidation of the key
// since the caller read it). It reports whether the counter matched.
func (l *local) putIfGen(e localEntry, gen *atomic.Uint64, want uint64) bool {
	if !l.takes(&e) {
		return gen.Load() == want
	}
	return l.store(e, gen, want)
}

// put stores e unless an entry with a newer fetch time is already there.
func (l *local) put(e localEntry) {
	if l.takes(&e) {
		l.store(e, nil, 0)
	}
}

// store puts e in the order unless it holds a newer fetch of the key, or, when gen is not nil, *gen
// moved from want; it reports whether gen matched. The check runs under the order's lock: an
// invalidation counts first and drops the key after, so a put that passed the check before the
// count is dropped with the key. e is a parameter of its own so that only a put that goes ahead
// moves an entry to the heap.
func (l *local) store(e localEntry, gen *atomic.Uint64, want uint64) bool {
	matched := true
	l.order.Put(e.key, &e, e.cost(), func(cur *localEntry, found bool) bool {
		if gen != nil {
			matched = gen.Load() == want
		}
		return matched && (!found || !cur.fetched.After(e.fetched))
	})
	return matched
}

// takes reports whether e fits at all; checked before store (a tier that is
// off would otherwise pay an allocation and the lock on every Redis hit).
func (l *local) takes(e *localEntry) bool { return l.maxEntries > 0 && e.cost() <= l.maxBytes }

func (l *local) remove(key string) { l.order.Remove(key) }

func (l *local) flush() { l.order.Flush() }

func (l *local) len() int {
	n, _ := l.order.Size()
	return n
}

// size is the number of entries and the bytes they are accounted for.
func (l *local) size() (int, int64) { return l.order.Size() }
