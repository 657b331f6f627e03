package identity

import (
	"sync"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// Identity is a user proven on this request.
type Identity struct {
	// Subject is the Keycloak user id (sub), equal in X-Userinfo and the token.
	Subject string
	// Claims are X-Userinfo's claims with the verified token's values merged in.
	Claims Claims
	// Orgs is the organization claim; a later plugin (orgsync) may replace it.
	Orgs Organizations
	// TokenVerified is true when a signed access token proved the identity
	// (userinfo's verify_token), false when X-Userinfo was trusted as sent.
	TokenVerified bool
	// OrgsSource says where orgsync took Orgs from ("keycloak", "cache",
	// "stale" or "token"); "" when no orgsync ran, and then no
	// X-User-Orgs-Source header is sent.
	OrgsSource string
}

// Emitter writes an identity's trusted headers and signed assertion to the
// upstream request. userinfo's route config is the emitter; orgsync calls it
// again after replacing the organizations, so the headers and the assertion
// always agree and are produced once.
type Emitter interface {
	Emit(r pkgHTTP.Request, id *Identity) error
}

// A Handoff passes a verified identity from userinfo to the plugin after it in
// the same chain. Plugins of one chain run one after the other in the
// goroutine serving the request, so the request object is the key.
type Handoff struct {
	Identity *Identity
	Emitter  Emitter
	// Emitted is true when userinfo already wrote the headers and assertion
	// (it did not yet know a follower would rewrite them).
	Emitted bool

	requestID uint32
	at        time.Time
}

// Chains remembers, per route (APISIX conf token), whether a plugin that
// rewrites identity follows userinfo. The runner gives plugins no view of the
// chain, but a conf token always maps to the same plugin list, so what was
// seen once holds for every later request with that token. Knowing it lets
// userinfo leave the emission (and the one signature) to the follower.
type Chains struct {
	mu        sync.Mutex
	handoffs  map[pkgHTTP.Request]*Handoff
	routes    map[uint32]*routeInfo
	lastPrune time.Time
}

type routeInfo struct {
	firstSeen time.Time
	lastSeen  time.Time
	follower  bool
}

// learnWindow is how long after a route's first request userinfo still hands
// off although it emitted itself: long enough for the first requests to reach
// the follower, short so that a route without follower stops handing off.
const learnWindow = 30 * time.Second

// handoffMaxAge: a hand-off not taken by then belongs to a chain whose
// follower never ran (a plugin before it answered the client).
const handoffMaxAge = time.Minute

// DefaultChains is the process-wide registry both plugins use.
var DefaultChains = NewChains()

// NewChains returns an empty registry.
func NewChains() *Chains {
	return &Chains{handoffs: map[pkgHTTP.Request]*Handoff{}, routes: map[uint32]*routeInfo{}}
}

type confTokener interface{ ConfToken() uint32 }

func confToken(r pkgHTTP.Request) (uint32, bool) {
	t, ok := r.(confTokener)
	if !ok {
		return 0, false
	}
	return t.ConfToken(), true
}

// FollowerKnown reports whether a rewriting plugin is known to follow on r's
// route: then userinfo hands off without emitting.
func (c *Chains) FollowerKnown(r pkgHTTP.Request) bool {
	token, ok := confToken(r)
	if !ok {
		return false
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	info := c.routes[token]
	if info == nil {
		c.pruneRoutesLocked(now)
		info = &routeInfo{firstSeen: now}
		c.routes[token] = info
	}
	info.lastSeen = now
	return info.follower
}

// Hand stores a hand-off for the plugin after userinfo. With emitted set, it
// is kept only while the route is still being learned, and only while few
// hand-offs are pending: it serves learning, nothing depends on it.
func (c *Chains) Hand(r pkgHTTP.Request, h *Handoff) {
	now := time.Now()
	token, hasToken := confToken(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.Emitted {
		if info := c.routes[token]; hasToken && info != nil && now.Sub(info.firstSeen) > learnWindow {
			return
		}
		if len(c.handoffs) >= maxLearningHandoffs {
			c.pruneHandoffsLocked(now)
			if len(c.handoffs) >= maxLearningHandoffs {
				return
			}
		}
	} else if len(c.handoffs) >= maxLearningHandoffs {
		c.pruneHandoffsLocked(now)
	}
	h.requestID = r.ID()
	h.at = now
	c.handoffs[r] = h
}

// maxLearningHandoffs bounds the hand-offs kept for learning. The runner pools
// its request objects, so in steady state the map holds about one entry per
// connection; more means hand-offs nobody takes.
const maxLearningHandoffs = 1024

// pruneHandoffsLocked drops hand-offs no follower took, at most once a second
// so that a full map does not cost a scan per request.
func (c *Chains) pruneHandoffsLocked(now time.Time) {
	if now.Sub(c.lastPrune) < time.Second {
		return
	}
	c.lastPrune = now
	for k, v := range c.handoffs {
		if now.Sub(v.at) > handoffMaxAge || now.Sub(v.at) > time.Second && v.Emitted {
			delete(c.handoffs, k)
		}
	}
}

// Take returns and forgets the hand-off userinfo left for this request, or
// nil when userinfo did not verify an identity on it. Calling Take marks r's
// route as one with a follower.
func (c *Chains) Take(r pkgHTTP.Request) *Handoff {
	token, hasToken := confToken(r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if hasToken {
		info := c.routes[token]
		if info == nil {
			info = &routeInfo{firstSeen: time.Now()}
			c.routes[token] = info
		}
		info.follower = true
	}
	h := c.handoffs[r]
	if h == nil {
		return nil
	}
	delete(c.handoffs, r)
	// The request object is pooled by the runner: a hand-off left by an
	// earlier request on the same object must not be taken for this one.
	if h.requestID != r.ID() || time.Since(h.at) > handoffMaxAge {
		return nil
	}
	return h
}

// pruneRoutesLocked forgets routes unused for a day (their conf tokens expired
// long ago: APISIX's default is an hour).
func (c *Chains) pruneRoutesLocked(now time.Time) {
	if len(c.routes) < 1024 {
		return
	}
	for t, info := range c.routes {
		if now.Sub(info.lastSeen) > 24*time.Hour {
			delete(c.routes, t)
		}
	}
}
