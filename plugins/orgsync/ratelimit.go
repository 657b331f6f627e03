package orgsync

import (
	"crypto/sha256"
	"sync"
	"time"
)

// rateLimiter is a token bucket for one invalidation route, with the set of
// bodies it accepted lately (for replay refusal). Both are per runner
// process: a fleet of N runners accepts N times the rate, and a replay
// reaching another runner within max_age is refused by that runner's
// timestamp check only.
type rateLimiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
	// seen maps a body digest to when it may be forgotten.
	seen map[[sha256.Size]byte]time.Time
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	return &rateLimiter{rate: perSecond, burst: float64(burst), tokens: float64(burst),
		seen: map[[sha256.Size]byte]time.Time{}}
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

// firstSeen records digest until forgetAt and reports whether it was new.
// The rate limit bounds how fast entries arrive and max_age how long they
// stay, so the set stays small.
func (l *rateLimiter) firstSeen(digest [sha256.Size]byte, forgetAt, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for d, until := range l.seen {
		if now.After(until) {
			delete(l.seen, d)
		}
	}
	if _, dup := l.seen[digest]; dup {
		return false
	}
	l.seen[digest] = forgetAt
	return true
}
