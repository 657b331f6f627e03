package orgsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
)

// maxMaxAge is the longest max_age a route may set.
const maxMaxAge = time.Hour

// replayHorizon is how long past its own time an accepted body is
// remembered: as long as any route could find it fresh (max_age at most
// maxMaxAge, with the sender's clock up to maxFutureSkew ahead). Keeping it
// only for the accepting route's max_age would let a second route with the
// same secret and a longer max_age accept it again once it was forgotten.
const replayHorizon = maxMaxAge + maxFutureSkew

// maxReplayEntries caps the process's record of accepted invalidations
// (about 80 bytes each). Only a call signed with a route's secret, fresh and
// not seen before gets in, and the routes' rate limits bound those: a route
// at the default 10 calls a second adds at most 36 600 within the horizon.
const maxReplayEntries = 100_000

// replaySet is the process's record of the invalidation bodies it accepted,
// by their MAC, shared by every route: a body accepted on one route is
// refused on another with the same secret, and on the same route after
// APISIX sent its config again.
type replaySet struct {
	mu    sync.Mutex
	max   int
	until map[[sha256.Size]byte]int64 // MAC → when it may be forgotten (unix ns)
	swept time.Time
}

func newReplaySet(max int) *replaySet {
	return &replaySet{max: max, until: map[[sha256.Size]byte]int64{}}
}

type claimOutcome int

const (
	claimNew claimOutcome = iota
	claimSeen
	claimFull
)

// claim records mac until forgetAt unless it is recorded already. When the
// set is full the call is refused rather than an entry dropped early: a
// dropped entry is a replay accepted, while a full set means the secret's
// holder sends more than the rate limits let through, and clears as the
// entries expire.
func (s *replaySet) claim(mac [sha256.Size]byte, forgetAt, now time.Time) claimOutcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A sweep visits every entry: at most once a second, or ten times a
	// second while full.
	if since := now.Sub(s.swept); since >= time.Second || (len(s.until) >= s.max && since >= 100*time.Millisecond) {
		s.swept = now
		for m, until := range s.until {
			if now.UnixNano() >= until {
				delete(s.until, m)
			}
		}
	}
	if until, ok := s.until[mac]; ok && now.UnixNano() < until {
		return claimSeen
	}
	if len(s.until) >= s.max {
		return claimFull
	}
	s.until[mac] = forgetAt.UnixNano()
	return claimNew
}

// release forgets mac: the call it stood for failed and may be sent again.
func (s *replaySet) release(mac [sha256.Size]byte) {
	s.mu.Lock()
	delete(s.until, mac)
	s.mu.Unlock()
}

func (s *replaySet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.until)
}

// claimInvalidation records a verified, fresh body (by its MAC) as accepted,
// in this process and, with Redis, in the fleet, so that it is accepted
// once until replayHorizon past its time. It returns the function that takes
// the record back (the call failed, and its sender may send it again), or
// the status and reason to refuse the call with.
//
// With Redis configured but not answering the call is refused (503): the
// fleet's record cannot be asked, and accepting on this process's record
// alone would let the same body through once on every runner. Nothing is
// lost by it: the invalidation could not reach the other runners through a
// Redis that is down either, and the sender's retry of the same body is
// accepted once Redis is back.
func (p *Plugin) claimInvalidation(ctx context.Context, mac [sha256.Size]byte, at, now time.Time) (release func(), status int, reason string) {
	forgetAt := at.Add(replayHorizon)
	switch p.replays.claim(mac, forgetAt, now) {
	case claimSeen:
		return nil, http.StatusConflict, ReasonReplayed
	case claimFull:
		p.logReplayCheck("invalidation refused: the record of accepted calls is full (more signed calls than the rate limits let through?)")
		return nil, http.StatusServiceUnavailable, ReasonReplaySetFull
	}
	local := func() { p.replays.release(mac) }
	// The MAC is a signature: Redis gets a digest of it, not the value.
	name := sha256.Sum256(mac[:])
	claim, first, err := p.deps.Cache.ClaimOnce(ctx, "orgsync:invalidation:"+hex.EncodeToString(name[:]), forgetAt.Sub(now))
	switch {
	case errors.Is(err, cache.ErrNoRedis):
		// One process is the whole fleet: its own record is the record.
		return local, 0, ""
	case err != nil:
		local()
		p.logReplayCheck("invalidation refused: Redis cannot say whether another runner accepted it", "error", err)
		return nil, http.StatusServiceUnavailable, ReasonReplayUnchecked
	case !first:
		// Claimed by another runner. Not kept here: should that runner's call
		// fail and give its claim back, the sender's retry must be accepted
		// wherever it lands.
		local()
		return nil, http.StatusConflict, ReasonReplayed
	}
	return func() {
		local()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if err := claim.Release(rctx); err != nil {
			logger().Warn("invalidation failed and its record in Redis stays: the sender's retry of the same body is refused",
				"error", err)
		}
	}, 0, ""
}

func (p *Plugin) logReplayCheck(msg string, args ...any) {
	if p.replayCheckLog.Allow(time.Now(), time.Minute) {
		logger().Warn(msg+" (logged at most once a minute)", args...)
	}
}
