// Package throttle bounds how often a repeated log line is written: an
// outage or a flood of forged calls costs one line per period, while the
// metrics count every occurrence. Each throttle is a field of what logs, so
// two of them (two caches, two plugins in one test binary) never silence
// each other.
package throttle

import (
	"sync/atomic"
	"time"
)

// Every lets one event through per period. The zero value is ready: the
// first event passes.
type Every struct {
	last atomic.Int64 // unix ns of the last event let through; 0 before
}

// Allow reports whether an event at now may be logged, and if so counts it
// as the last one. Of events racing in one period, one wins.
func (e *Every) Allow(now time.Time, period time.Duration) bool {
	last := e.last.Load()
	n := now.UnixNano()
	if last != 0 && n-last < int64(period) {
		return false
	}
	return e.last.CompareAndSwap(last, n)
}
