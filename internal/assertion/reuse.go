package assertion

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/lru"
)

// Reuser signs an assertion once per identity and hands the same one out
// again while less than half of its lifetime has passed: an ES256 signature
// costs more than everything else on a request, and an upstream gains
// nothing from a fresh one per request. iat, exp and jti therefore describe
// the assertion, not the request carrying it. Anything that changes the
// claims (organizations, profile, audience, the token's realm) or the
// signing key gives a new assertion at once, because they are all part of
// the cache key: the key is the signed payload itself, less iat, exp, jti.
type Reuser struct {
	cache *lru.Cache[[sha256.Size]byte, signed]
	now   func() time.Time
}

type signed struct {
	jws        string
	reuseUntil time.Time
}

// DefaultReuseBytes is the default budget of the signed assertions kept.
const DefaultReuseBytes = 8 << 20

// NewReuser keeps at most maxBytes of signed assertions (<= 0: the default).
func NewReuser(maxBytes int64) *Reuser {
	if maxBytes <= 0 {
		maxBytes = DefaultReuseBytes
	}
	return &Reuser{cache: lru.New[[sha256.Size]byte, signed](maxBytes), now: time.Now}
}

// Sign returns an assertion of c signed by keys, valid for ttl: a reused one
// when an equal c was signed by the same key less than ttl/2 ago, else a new
// one. c's IssuedAt, Expiry and ID are set by Sign. It reports whether the
// assertion is new, and until when it may be reused.
func (r *Reuser) Sign(keys *KeyRing, c *Claims, ttl time.Duration) (jws string, fresh bool, reuseUntil time.Time, err error) {
	identity, err := c.identity()
	if err != nil {
		return "", false, time.Time{}, err
	}
	body, err := json.Marshal(identity)
	if err != nil {
		return "", false, time.Time{}, err
	}
	h := sha256.New()
	h.Write([]byte(keys.KeyID()))
	h.Write([]byte{0})
	h.Write([]byte(ttl.String()))
	h.Write([]byte{0})
	h.Write(body)
	var key [sha256.Size]byte
	h.Sum(key[:0])

	now := r.now()
	if s, ok := r.cache.Get(key); ok && now.Before(s.reuseUntil) {
		return s.jws, false, s.reuseUntil, nil
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	c.IssuedAt = now
	c.Expiry = now.Add(ttl)
	c.ID = base64.RawURLEncoding.EncodeToString(nonce[:])
	jws, err = keys.SignClaims(c)
	if err != nil {
		return "", false, time.Time{}, err
	}
	reuseUntil = now.Add(ttl / 2)
	r.cache.Add(key, signed{jws: jws, reuseUntil: reuseUntil}, int64(len(jws))+128)
	return jws, true, reuseUntil, nil
}
