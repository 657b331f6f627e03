package cache

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
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
// A local with maxEntries 0 holds nothing.
type local struct {
	mu         sync.Mutex
	maxEntries int
	maxBytes   int64
	bytes      int64
	ll         *list.List // front = most recently used; values are *localEntry
	byID       map[string]*list.Element
}

func newLocal(maxEntries int, maxBytes int64) *local {
	return &local{maxEntries: maxEntries, maxBytes: maxBytes, ll: list.New(), byID: make(map[string]*list.Element)}
}

// get returns a copy of the entry's metadata and its value slice (shared, never modified in place).
func (l *local) get(key string) (localEntry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.byID[key]
	if !ok {
		return localEntry{}, false
	}
	l.ll.MoveToFront(el)
	return *el.Value.(*localEntry), true
}

// putIfGen stores e like put, but only while *gen still equals want (no invalidation of the key
// since the caller read it). It reports whether the counter matched.
func (l *local) putIfGen(e localEntry, gen *atomic.Uint64, want uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen.Load() != want {
		return false
	}
	l.putLocked(e)
	return true
}

// put stores e unless an entry with a newer fetch time is already there.
func (l *local) put(e localEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.putLocked(e)
}

func (l *local) putLocked(e localEntry) {
	if l.maxEntries == 0 || e.cost() > l.maxBytes {
		return
	}
	if el, ok := l.byID[e.key]; ok {
		cur := el.Value.(*localEntry)
		if cur.fetched.After(e.fetched) {
			return
		}
		l.bytes += e.cost() - cur.cost()
		*cur = e
		l.ll.MoveToFront(el)
	} else {
		l.byID[e.key] = l.ll.PushFront(&e)
		l.bytes += e.cost()
	}
	for l.ll.Len() > l.maxEntries || l.bytes > l.maxBytes {
		l.removeLocked(l.ll.Back())
	}
}

func (l *local) removeLocked(el *list.Element) {
	e := l.ll.Remove(el).(*localEntry)
	delete(l.byID, e.key)
	l.bytes -= e.cost()
}

func (l *local) remove(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.byID[key]; ok {
		l.removeLocked(el)
	}
}

func (l *local) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ll.Init()
	clear(l.byID)
	l.bytes = 0
}

func (l *local) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ll.Len()
}

// size is the number of entries and the bytes they are accounted for.
func (l *local) size() (int, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ll.Len(), l.bytes
}
