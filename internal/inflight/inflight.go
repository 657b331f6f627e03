// Package inflight counts plugin calls under way, so that on SIGTERM the
// runner can let them finish (the runner library stops without draining).
package inflight

import (
	"sync/atomic"
	"time"
)

var calls atomic.Int64

// Begin marks a call under way; call the returned func when it ends.
func Begin() func() {
	calls.Add(1)
	return func() { calls.Add(-1) }
}

// Count is the number of calls under way.
func Count() int64 { return calls.Load() }

// Wait returns when no call is under way, or after at most max. It reports
// whether all calls finished.
func Wait(max time.Duration) bool {
	deadline := time.Now().Add(max)
	for calls.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
