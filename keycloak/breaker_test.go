package keycloak

import (
	"errors"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func mustAllow(t *testing.T, b *breaker) {
	t.Helper()
	if err := b.allow(); err != nil {
		t.Fatalf("allow: %v", err)
	}
}
func mustRefuse(t *testing.T, b *breaker) {
	t.Helper()
	if err := b.allow(); !errors.Is(err, ErrCoolingOff) {
		t.Fatalf("allow = %v, want ErrCoolingOff", err)
	}
}

func TestBreakerOpensAfterThresholdAndRecovers(t *testing.T) {
	clock := newFakeClock()
	b := newBreaker(3, 10*time.Second)
	b.now = clock.now
	var changes []bool
	b.onChange = func(open bool, _ int) { changes = append(changes, open) }

	for range 2 {
		mustAllow(t, b)
		b.done(outcomeFailure)
	}
	mustAllow(t, b)
	b.done(outcomeSuccess) // a success resets the count
	for range 2 {
		mustAllow(t, b)
		b.done(outcomeFailure)
	}
	if b.isOpen() {
		t.Fatal("open after 2 consecutive failures, threshold 3")
	}
	mustAllow(t, b)
	b.done(outcomeFailure)
	if !b.isOpen() {
		t.Fatal("closed after 3 consecutive failures")
	}
	mustRefuse(t, b)
	clock.add(9 * time.Second)
	mustRefuse(t, b)

	clock.add(time.Second)
	mustAllow(t, b)  // the one trial
	mustRefuse(t, b) // others wait while it runs
	b.done(outcomeFailure)
	mustRefuse(t, b) // open again for a full cool-off
	clock.add(10 * time.Second)
	mustAllow(t, b)
	b.done(outcomeSuccess)
	if b.isOpen() {
		t.Fatal("still open after a successful trial")
	}
	mustAllow(t, b)
	b.done(outcomeSuccess)

	if len(changes) != 2 || !changes[0] || changes[1] {
		t.Fatalf("state changes = %v, want [open closed] (logged once each)", changes)
	}
}

func TestBreakerNeutralTrialFreesTheSlot(t *testing.T) {
	clock := newFakeClock()
	b := newBreaker(1, time.Second)
	b.now = clock.now
	mustAllow(t, b)
	b.done(outcomeFailure)
	clock.add(time.Second)
	mustAllow(t, b)
	b.done(outcomeNeutral) // the caller gave up: no verdict
	mustAllow(t, b)        // a new trial may go
	b.done(outcomeSuccess)
	if b.isOpen() {
		t.Fatal("open after a successful trial")
	}
}

func TestBreakerNeutralDoesNotCount(t *testing.T) {
	b := newBreaker(2, time.Second)
	for range 5 {
		mustAllow(t, b)
		b.done(outcomeNeutral)
	}
	if b.isOpen() {
		t.Fatal("canceled calls opened the breaker")
	}
}
