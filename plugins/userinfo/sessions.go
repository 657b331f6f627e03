package userinfo

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
)

// sessions remembers, per route config, the identity established from one
// (X-Userinfo, X-Access-Token) pair. A logged-in user sends the same pair on
// every request until the token is renewed, so decoding, verifying and
// checking it once per token is enough; the token's expiry is still checked
// on every request.
type sessions struct {
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]sessionEntry
	max     int
}

type sessionEntry struct {
	id *identity.Identity
	// expires is the token's expiry plus the leeway.
	expires time.Time
}

func newSessions(max int) *sessions {
	return &sessions{entries: map[[sha256.Size]byte]sessionEntry{}, max: max}
}

func sessionKey(userinfo, token string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(userinfo))
	h.Write([]byte{0})
	h.Write([]byte(token))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// get returns a copy of the identity for the pair, or nil. The copy is
// shallow: plugins replace Orgs and clone Claims before changing them.
func (s *sessions) get(key [sha256.Size]byte, now time.Time) *identity.Identity {
	s.mu.RLock()
	e, ok := s.entries[key]
	s.mu.RUnlock()
	if !ok || now.After(e.expires) {
		return nil
	}
	id := *e.id
	return &id
}

func (s *sessions) put(key [sha256.Size]byte, id *identity.Identity, expires time.Time) {
	stored := *id
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.entries) >= s.max {
		for k, e := range s.entries {
			if now.After(e.expires) {
				delete(s.entries, k)
			}
		}
		for k := range s.entries {
			if len(s.entries) < s.max/2 {
				break
			}
			delete(s.entries, k)
		}
	}
	s.entries[key] = sessionEntry{id: &stored, expires: expires}
}
