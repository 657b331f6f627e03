package cache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"time"
)

// Whoever can write Redis is not trusted with what the fleet serves: orgsync's snapshots carry
// roles, groups and the account state straight into the signed assertion. So every value the
// cache puts in Redis is sealed with an HMAC-SHA256 under the fleet's secret (Options.ValueSecret),
// over its full Redis key, its fetch time and its bytes. A forged value, a value moved to another
// key and an old value given a new date all fail the check, and are misses: loaded again from the
// source. The in-process tier is this process's own memory and carries no MAC.
//
// Envelope: 1 version byte (2), 8 bytes big-endian unix ms of the fetch, 32 bytes of MAC, the value.
const (
	envelopeVersion = 2
	envelopeHeader  = 1 + 8 + sha256.Size
	// MinValueSecret is the shortest Options.ValueSecret accepted: the MAC's own strength.
	MinValueSecret = 32
	// maxClockSkew is how far ahead of this process's clock a fetch time may lie and still count.
	// Every fleet member stamps values with its own clock, and NTP keeps them within milliseconds;
	// 5 s covers a node whose clock is being corrected, while a value dated further ahead would
	// otherwise stay fresh until the clock caught up with it (forever, for a far date).
	maxClockSkew = 5 * time.Second
)

// macDomain separates this MAC from any other use of the same secret.
const macDomain = "apisix-identity cache value v2\x00"

// macState is an HMAC-SHA256 under ValueSecret kept between uses: Reset returns it to its keyed
// state without hashing the key again, and the scratch buffer spares an allocation per part.
type macState struct {
	h       hash.Hash
	scratch []byte
	sum     [sha256.Size]byte
}

// macOf runs fn with the MAC of (redisKey, ms, value) in sum; sum is valid only during fn.
func (c *Cache) macOf(redisKey string, ms uint64, value []byte, fn func(sum []byte)) {
	s, _ := c.macs.Get().(*macState)
	if s == nil {
		s = &macState{h: hmac.New(sha256.New, c.opts.ValueSecret)}
	}
	s.h.Reset()
	s.scratch = append(s.scratch[:0], macDomain...)
	// The key's length first, so that key and value cannot trade bytes.
	s.scratch = binary.BigEndian.AppendUint64(s.scratch, uint64(len(redisKey)))
	s.scratch = append(s.scratch, redisKey...)
	s.scratch = binary.BigEndian.AppendUint64(s.scratch, ms)
	s.h.Write(s.scratch)
	s.h.Write(value)
	fn(s.h.Sum(s.sum[:0]))
	if cap(s.scratch) <= maxPooledMACScratch {
		c.macs.Put(s)
	}
}

// maxPooledMACScratch keeps a state that hashed an unusually long key out of the pool.
const maxPooledMACScratch = 1 << 10

// sealEntry is e as stored under key (a cache key) in Redis.
func (c *Cache) sealEntry(key string, e Entry) []byte { return c.seal(c.valueKey(key), e) }

// seal is e in the envelope, bound to redisKey (the full Redis key it is stored under).
func (c *Cache) seal(redisKey string, e Entry) []byte {
	ms := uint64(e.FetchedAt.UnixMilli())
	b := make([]byte, envelopeHeader+len(e.Value))
	b[0] = envelopeVersion
	binary.BigEndian.PutUint64(b[1:9], ms)
	c.macOf(redisKey, ms, e.Value, func(sum []byte) { copy(b[9:envelopeHeader], sum) })
	copy(b[envelopeHeader:], e.Value)
	return b
}

// open checks and decodes what Redis holds under redisKey. A value that is not in the envelope,
// fails the MAC, or is dated in the future is refused (counted, logged at most once a minute).
func (c *Cache) open(redisKey string, b []byte) (Entry, bool) {
	if len(b) < envelopeHeader || b[0] != envelopeVersion {
		c.reject(rejectFormat, redisKey)
		return Entry{}, false
	}
	ms := binary.BigEndian.Uint64(b[1:9])
	var genuine bool
	c.macOf(redisKey, ms, b[envelopeHeader:], func(sum []byte) { genuine = hmac.Equal(b[9:envelopeHeader], sum) })
	if !genuine {
		c.reject(rejectMAC, redisKey)
		return Entry{}, false
	}
	e := Entry{Value: b[envelopeHeader:], FetchedAt: time.UnixMilli(int64(ms))}
	if future(time.Now(), e.FetchedAt) {
		c.reject(rejectFuture, redisKey)
		return Entry{}, false
	}
	return e, true
}

// future reports a fetch time too far ahead of now to be believed.
func future(now, fetched time.Time) bool { return fetched.Sub(now) > maxClockSkew }

// Reasons a Redis value is refused (the reason label of values_rejected_total).
const (
	// not the current envelope: garbage, or written by a runner of a version before values were
	// sealed (during a rolling upgrade each side reloads what the other wrote)
	rejectFormat = "format"
	rejectMAC    = "mac"    // the MAC does not match: forged, altered or moved from another key
	rejectFuture = "future" // genuine, but dated beyond maxClockSkew ahead: a member's clock is wrong
)

// rejectLogEvery bounds the log lines about refused values: a writer flooding Redis with forged
// values costs one line a minute, and the metric counts them all.
const rejectLogEvery = time.Minute

func (c *Cache) reject(reason, key string) {
	switch reason {
	case rejectFormat:
		rejectedFormat.Inc()
	case rejectMAC:
		rejectedMAC.Inc()
	default:
		rejectedFuture.Inc()
	}
	if !c.rejectLog.Allow(time.Now(), rejectLogEvery) {
		return
	}
	// The key names the entry (a user id, not a secret); neither the value nor the secret is logged.
	logger().Warn("redis value refused and treated as a miss: written by something that does not hold "+
		"the fleet's value secret, or by a member with another secret or a wrong clock; more are counted in "+
		"apisix_identity_cache_redis_values_rejected_total, logged at most once a minute",
		"reason", reason, "key", key)
}
