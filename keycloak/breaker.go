package keycloak

import (
	"errors"
	"sync"
	"time"
)

// ErrCoolingOff: the circuit breaker is open, so Keycloak was not asked.
var ErrCoolingOff = errors.New("cooling off after repeated failures")

type breakerState int

const (
	breakerClosed   breakerState = iota // calls go through
	breakerOpenS                        // calls fail fast until the cool-off ends
	breakerHalfOpen                     // one trial call is allowed
)

// outcome is what one call tells the breaker.
type outcome int

const (
	outcomeSuccess outcome = iota // Keycloak answered (any status below 500)
	outcomeFailure                // timeout, connection error or 5xx
	outcomeNeutral                // the caller gave up: says nothing about Keycloak
)

// breaker fails calls fast after threshold consecutive failures, for coolOff,
// then lets one trial call through: success closes it, failure opens it again.
type breaker struct {
	threshold int
	coolOff   time.Duration
	now       func() time.Time

	mu       sync.Mutex
	state    breakerState
	failures int
	openedAt time.Time
	trial    bool // a trial call is in flight (half-open)
	onChange func(open bool, failures int)
}

func newBreaker(threshold int, coolOff time.Duration) *breaker {
	return &breaker{threshold: threshold, coolOff: coolOff, now: time.Now}
}

// allow reports whether a call may go out. A nil error obliges the caller to
// call done with the outcome.
func (b *breaker) allow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return nil
	case breakerOpenS:
		if b.now().Sub(b.openedAt) < b.coolOff {
			return ErrCoolingOff
		}
		b.state = breakerHalfOpen
		b.trial = true
		return nil
	default: // half-open
		if b.trial {
			return ErrCoolingOff
		}
		b.trial = true
		return nil
	}
}

// done records the outcome of a call that allow let through.
func (b *breaker) done(o outcome) {
	b.mu.Lock()
	var changed, open bool
	var failures int
	switch o {
	case outcomeSuccess:
		if b.state != breakerClosed {
			changed, open = true, false
		}
		b.state, b.failures, b.trial = breakerClosed, 0, false
	case outcomeFailure:
		b.failures++
		failures = b.failures
		if b.state == breakerHalfOpen || (b.state == breakerClosed && b.failures >= b.threshold) {
			changed, open = b.state == breakerClosed, true
			b.state, b.openedAt, b.trial = breakerOpenS, b.now(), false
		}
	case outcomeNeutral:
		if b.state == breakerHalfOpen {
			b.trial = false
		}
	}
	onChange := b.onChange
	b.mu.Unlock()
	if changed && onChange != nil {
		onChange(open, failures)
	}
}

// isOpen reports whether calls currently fail fast.
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state != breakerClosed
}
