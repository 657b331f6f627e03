// Package inflight counts plugin calls under way, so that on SIGTERM the
// runner can let them finish (the runner library stops without draining).
package inflight

import (
	"sync/atomic"
	"time"
)

// Counter counts the calls under way. main makes one and hands it to every
// plugin; the zero value is ready, and a nil *Counter counts nothing.
type Counter struct {
	calls atomic.Int64
}

func noop() {}

// Begin marks a call under way; call the returned func when it ends.
func (c *Counter) Begin() func() {
	if c == nil {
		return noop
	}
	c.calls.Add(1)
	return c.end
}

func (c *Counter) end() { c.calls.Add(-1) }

// Count is the number of calls under way.
func (c *Counter) Count() int64 {
	if c == nil {
		return 0
	}
	return c.calls.Load()
}

// Wait returns when no call is under way, or after at most max. It reports
// whether all calls finished.
func (c *Counter) Wait(max time.Duration) bool {
	deadline := time.Now().Add(max)
	for c.Count() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
