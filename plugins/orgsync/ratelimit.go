package orgsync

import (
	"sync"
	"time"
)

// rateLimiter is a token bucket for one invalidation route, per runner
// process: a fleet of N runners accepts N times the rate. It counts only
// calls that are signed, fresh and new: an unsigned flood or the replay of
// a captured call must not use up the budget of the genuine sender.
type rateLimiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	return &rateLimiter{rate: perSecond, burst: float64(burst), tokens: float64(burst)}
}

// allow takes one token, reporting false when none is left.
func (l *rateLimiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens += now.Sub(l.last).Seconds() * l.rate
		if l.tokens > l.burst {
			l.tokens = l.burst
		}
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}
