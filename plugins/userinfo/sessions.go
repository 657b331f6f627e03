package userinfo

import (
	"encoding/binary"
	"hash/maphash"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/lru"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// sessions remembers the identity established from one login's headers
// (X-Userinfo, X-Access-Token, X-Raw-ID-Token) under one verifier and
// audience. A logged-in user sends the same headers on every request until
// the token is renewed, so decoding, verifying and binding them once per
// token is enough; the token's expiry is still checked on every request. The
// cache is process-wide and bounded in bytes: route configs come and go, and
// a client sending many distinct X-Userinfo values with one valid token
// evicts old entries instead of growing the process.
type sessions struct {
	seed  maphash.Seed
	cache *lru.Cache[sessionKey, *session]
}

type sessionKey struct {
	verifier *keycloak.TokenVerifier
	audience string
	hash     uint64
}

// session is one proven login. Its fields never change once stored.
type session struct {
	// The headers it was proven from: a hash match is confirmed against
	// them, so no collision can hand one user's identity to another.
	userinfo, token, rawIDToken string
	id                          identity.Identity
	// expires is the token's expiry plus the leeway.
	expires time.Time
	// sessionID and issuedAt are the token's sid and iat: a revocation is
	// checked against them on every use.
	sessionID string
	issuedAt  time.Time
	// idToken is the X-ID-Token value to pass upstream: the verified
	// X-Raw-ID-Token's claims, or "" to remove both ID token headers.
	idToken string
}

func newSessions(maxBytes int64) *sessions {
	return &sessions{seed: maphash.MakeSeed(), cache: lru.New[sessionKey, *session](maxBytes)}
}

// key hashes the headers' lengths and their last keyTail bytes only: a
// token's tail is its signature, which differs between any two tokens, so
// distinct logins get distinct keys, and hashing 3 KB of headers on every
// request cost more than the rest of the lookup. Keys of headers that share
// the tails collide, and get still compares every byte, so a collision costs
// a verification, never an identity. The headers are views of the request
// frame: nothing here keeps them.
func (s *sessions) key(v *keycloak.TokenVerifier, audience string, userinfo, token, rawIDToken []byte) sessionKey {
	var h maphash.Hash
	h.SetSeed(s.seed)
	var lengths [12]byte
	binary.LittleEndian.PutUint32(lengths[0:], uint32(len(userinfo)))
	binary.LittleEndian.PutUint32(lengths[4:], uint32(len(token)))
	binary.LittleEndian.PutUint32(lengths[8:], uint32(len(rawIDToken)))
	h.Write(lengths[:])
	h.Write(tail(userinfo))
	h.Write(tail(token))
	h.Write(tail(rawIDToken))
	return sessionKey{verifier: v, audience: audience, hash: h.Sum64()}
}

// keyTail is how much of each header's end the session key hashes: 48
// bytes of a JWS signature in base64url.
const keyTail = 64

func tail(b []byte) []byte {
	if len(b) > keyTail {
		return b[len(b)-keyTail:]
	}
	return b
}

// get returns the session proven from exactly these headers, or nil.
func (s *sessions) get(k sessionKey, userinfo, token, rawIDToken []byte, now time.Time) *session {
	e, ok := s.cache.Get(k)
	if !ok || e.token != string(token) || e.userinfo != string(userinfo) || e.rawIDToken != string(rawIDToken) {
		return nil
	}
	if now.After(e.expires) {
		s.cache.Remove(k)
		return nil
	}
	return e
}

func (s *sessions) put(k sessionKey, e *session) {
	s.cache.Add(k, e, e.size())
}

// size is what a session costs in memory, roughly: the headers it keeps and
// its claims (its renderings are the emitter's, in the emitter's budget).
func (e *session) size() int64 {
	n := 512 + len(e.userinfo) + len(e.token) + len(e.rawIDToken) + len(e.idToken) + len(e.sessionID) +
		len(e.id.Subject()) + len(e.id.Issuer()) + e.id.ClaimsBytes()
	return int64(n)
}
