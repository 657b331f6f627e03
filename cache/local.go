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

// local is the in-process tier: a bounded LRU. Entries past LocalTTL are not dropped: they stay as a
// fallback for when Redis and the loader both fail, until evicted by size, by Retention or by an
// invalidation. Callers decide what "expired" means.
type local struct {
	mu   sync.Mutex
	max  int
	ll   *list.List // front = most recently used; values are *localEntry
	byID map[string]*list.Element
}

func newLocal(max int) *local {
	return &local{max: max, ll: list.New(), byID: make(map[string]*list.Element)}
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
	if el, ok := l.byID[e.key]; ok {
		cur := el.Value.(*localEntry)
		if cur.fetched.After(e.fetched) {
			return
		}
		*cur = e
		l.ll.MoveToFront(el)
		return
	}
	l.byID[e.key] = l.ll.PushFront(&e)
	for l.ll.Len() > l.max {
		last := l.ll.Back()
		l.ll.Remove(last)
		delete(l.byID, last.Value.(*localEntry).key)
	}
}

func (l *local) remove(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.byID[key]; ok {
		l.ll.Remove(el)
		delete(l.byID, key)
	}
}

func (l *local) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ll.Init()
	clear(l.byID)
}

func (l *local) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ll.Len()
}
