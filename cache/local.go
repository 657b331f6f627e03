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
	ll         *list.List // front = most recently used; values are *localEntry, never changed once there
	byID       map[string]*list.Element

	// hot is the entry last put at the front, hotAt the count of moves to
	// the front then (moves), count the number of entries; written under
	// mu. get returns hot without taking mu while fewer moves than half the
	// entries happened since (it is then in the front half, far from
	// eviction): a user's run of requests reads the tier without writing
	// to it, where two cores taking mu in turn cost more than the lookup.
	hot   atomic.Pointer[localEntry]
	hotAt atomic.Uint64
	moves atomic.Uint64
	count atomic.Int64
}

func newLocal(maxEntries int, maxBytes int64) *local {
	return &local{maxEntries: maxEntries, maxBytes: maxBytes, ll: list.New(), byID: make(map[string]*list.Element)}
}

// get returns a copy of the entry's metadata and its value slice (shared, never modified in place).
func (l *local) get(key string) (localEntry, bool) {
	if e := l.hot.Load(); e != nil && e.key == key && l.moves.Load()-l.hotAt.Load() <= uint64(l.count.Load())/2 {
		return *e, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.byID[key]
	if !ok {
		return localEntry{}, false
	}
	l.toFront(el)
	return *el.Value.(*localEntry), true
}

// toFront moves el to the front and makes its entry the hot one. Under mu.
func (l *local) toFront(el *list.Element) {
	l.ll.MoveToFront(el)
	l.hot.Store(el.Value.(*localEntry))
	l.hotAt.Store(l.moves.Add(1))
}

// putIfGen stores e like put, but only while *gen still equals want (no invalidation of the key
// since the caller read it). It reports whether the counter matched.
func (l *local) putIfGen(e localEntry, gen *atomic.Uint64, want uint64) bool {
	if !l.takes(&e) {
		return gen.Load() == want
	}
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
	if !l.takes(&e) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.putLocked(e)
}

// takes reports whether e fits at all; checked before the lock, and before e
// reaches putLocked, which moves it to the heap (a tier that is off would
// otherwise pay an allocation and the lock on every Redis hit).
func (l *local) takes(e *localEntry) bool { return l.maxEntries > 0 && e.cost() <= l.maxBytes }

// putLocked stores e, which takes accepted.
func (l *local) putLocked(e localEntry) {
	if el, ok := l.byID[e.key]; ok {
		cur := el.Value.(*localEntry)
		if cur.fetched.After(e.fetched) {
			return
		}
		l.bytes += e.cost() - cur.cost()
		el.Value = &e
		l.toFront(el)
	} else {
		el := l.ll.PushFront(&e)
		l.byID[e.key] = el
		l.bytes += e.cost()
		l.toFront(el)
	}
	for l.ll.Len() > l.maxEntries || l.bytes > l.maxBytes {
		l.removeLocked(l.ll.Back())
	}
	l.count.Store(int64(l.ll.Len()))
}

// removeLocked drops el; a get that starts after it returns cannot see the
// entry, hot included.
func (l *local) removeLocked(el *list.Element) {
	e := l.ll.Remove(el).(*localEntry)
	if l.hot.Load() == e {
		l.hot.Store(nil)
	}
	delete(l.byID, e.key)
	l.bytes -= e.cost()
	l.count.Store(int64(l.ll.Len()))
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
	l.hot.Store(nil)
	l.count.Store(0)
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
