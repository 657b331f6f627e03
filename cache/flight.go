package cache

import "sync"

// call is one running fill of a key; done closes when entry/src/err are set.
type call struct {
	done  chan struct{}
	entry Entry
	src   Source
	err   error
}

// group deduplicates fills per key within the process (a small singleflight whose callers can
// stop waiting without cancelling the fill).
type group struct {
	mu sync.Mutex
	m  map[string]*call
}

// join returns the running call for key, or registers a new one and reports started = true;
// the starter must call finish.
func (g *group) join(key string) (cl *call, started bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cl, ok := g.m[key]; ok {
		return cl, false
	}
	cl = &call{done: make(chan struct{})}
	g.m[key] = cl
	return cl, true
}

func (g *group) finish(key string, cl *call, e Entry, src Source, err error) {
	cl.entry, cl.src, cl.err = e, src, err
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
	close(cl.done)
}
