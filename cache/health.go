package cache

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is declared down only when most of its recent commands failed, or when none has
// succeeded for a while: a slow Redis that still answers keeps its fill locks, so a fleet under
// load does not start calling the loader once per process. A single failure (a timeout under
// load, typically) changes nothing.
const (
	healthWindow      = 5 * time.Second // span over which outcomes are counted
	healthBuckets     = 5               // the window is kept as this many slices
	healthMinFailures = 5               // at least this many failures in the window...
	healthFailRatio   = 0.8             // ...and at least this share of the window's outcomes
	healthSilence     = time.Second     // or: this long without a success, healthMinFailures failed
)

// failureKind tells a command that got no answer in time from one whose connection is gone.
type failureKind int

const (
	failNone       failureKind = iota // Redis answered (an error reply included)
	failTimeout                       // no answer within OpTimeout: Redis may be slow, not dead
	failConnection                    // refused, reset, closed: nobody is answering
)

// classify sorts a command's error. Error replies from the server (WRONGTYPE, NOSCRIPT...) are
// answers: Redis is up. A refused login is not: the cache cannot use that Redis.
func classify(err error) failureKind {
	if err == nil || errors.Is(err, redis.Nil) {
		return failNone
	}
	if isTimeout(err) {
		return failTimeout
	}
	var reply redis.Error
	if errors.As(err, &reply) {
		msg := reply.Error()
		for _, p := range []string{"NOAUTH", "WRONGPASS", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "READONLY"} {
			if strings.HasPrefix(msg, p) {
				return failConnection
			}
		}
		return failNone
	}
	return failConnection
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// health is a breaker over Redis: it counts the outcomes of recent commands in a sliding window
// and opens (Redis down) when failures reach both healthMinFailures and healthFailRatio, or when
// healthMinFailures commands in a row failed over at least healthSilence (a Redis that stopped
// answering after a busy healthy spell, whose successes would hold the ratio down for the whole
// window). While open, the Get path leaves Redis alone; the first command that succeeds (the
// probe's PING, most often) closes it again and clears the window.
type health struct {
	mu      sync.Mutex
	now     func() time.Time
	slots   [healthBuckets]healthSlot
	down    bool
	lastErr error
	run     int       // failures since the last success
	runFrom time.Time // time of the first of them
}

type healthSlot struct {
	start    int64 // unix nanoseconds of the slot's beginning
	ok, fail int
}

// record adds one outcome and reports a state change: +1 Redis went down, -1 it recovered, 0 none.
func (h *health) record(kind failureKind, err error) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if kind == failNone {
		h.run = 0
		if h.down {
			h.down = false
			h.slots = [healthBuckets]healthSlot{}
			return -1
		}
		h.slot().ok++
		return 0
	}
	h.lastErr = err
	if h.down {
		return 0
	}
	now := h.now()
	if h.run == 0 {
		h.runFrom = now
	}
	h.run++
	h.slot().fail++
	ok, fail := h.sums()
	silent := h.run >= healthMinFailures && now.Sub(h.runFrom) >= healthSilence
	if silent || fail >= healthMinFailures && float64(fail) >= healthFailRatio*float64(ok+fail) {
		h.down = true
		return +1
	}
	return 0
}

// forceDown marks Redis down without a window (New: the first PING failed; there is no answer
// to weigh it against). It reports whether the state changed.
func (h *health) forceDown(err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastErr = err
	if h.down {
		return false
	}
	h.down = true
	return true
}

func (h *health) isDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.down
}

// slot returns the slot of now, recycling it when it belongs to an older turn of the ring.
func (h *health) slot() *healthSlot {
	width := int64(healthWindow / healthBuckets)
	t := h.now().UnixNano()
	start := t - t%width
	s := &h.slots[(start/width)%healthBuckets]
	if s.start != start {
		*s = healthSlot{start: start}
	}
	return s
}

// sums adds up the slots still inside the window.
func (h *health) sums() (ok, fail int) {
	oldest := h.now().Add(-healthWindow).UnixNano()
	for _, s := range h.slots {
		if s.start > oldest {
			ok += s.ok
			fail += s.fail
		}
	}
	return ok, fail
}
