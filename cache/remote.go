package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

func logger() *slog.Logger { return slog.Default().With("component", "cache") }

// redisLog sends go-redis's own log lines (a failed dial, once per attempt) to slog at Debug, so
// an outage is logged once per state change by this package instead of once per attempt.
type redisLog struct{}

func (redisLog) Printf(ctx context.Context, format string, v ...any) {
	if l := slog.Default(); l.Enabled(ctx, slog.LevelDebug) {
		l.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "redis")
	}
}

var setRedisLogger sync.Once

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Key layout under KeyPrefix.
func (c *Cache) valueKey(k string) string { return c.opts.KeyPrefix + "v:" + k }
func (c *Cache) lockKey(k string) string  { return c.opts.KeyPrefix + "lock:" + k }
func (c *Cache) leaseKey(n string) string { return c.opts.KeyPrefix + "lease:" + n }
func (c *Cache) stateKey(n string) string { return c.opts.KeyPrefix + "state:" + n }
func (c *Cache) feedKey(s string) string  { return c.opts.KeyPrefix + "feed:" + s }
func (c *Cache) revKey(h string) string   { return c.opts.KeyPrefix + "rev:" + h }
func (c *Cache) redisUsable() bool        { return c.rdb != nil && c.up.Load() && !c.closed.Load() }
func (c *Cache) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opts.OpTimeout)
}

// observe records the outcome of a Redis command in the health window, unless the caller's own
// context ended first (that says nothing about Redis). State changes are logged once each way, at
// the same level, so an operator who sees the outage also sees its end.
func (c *Cache) observe(parent context.Context, err error) {
	kind := classify(err)
	if kind != failNone {
		if parent.Err() != nil || c.closed.Load() {
			return
		}
		if kind == failTimeout {
			redisTimeouts.Inc()
		} else {
			redisConnErrors.Inc()
		}
	}
	switch c.health.record(kind, err) {
	case +1:
		c.markDown(err)
	case -1:
		c.up.Store(true)
		redisUp.Set(1)
		logger().Warn("redis recovered; using it again")
	}
}

func (c *Cache) markDown(err error) {
	c.up.Store(false)
	redisUp.Set(0)
	logger().Warn("redis unavailable; serving from the in-process tier and the loader", "error", err)
}

// probe pings Redis every Options.ProbeInterval while it is marked down, so the cache recovers by itself.
func (c *Cache) probe() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-c.closeCtx.Done():
			return
		case <-t.C:
			if c.up.Load() {
				continue
			}
			ctx, cancel := c.opCtx(c.closeCtx)
			err := c.rdb.Ping(ctx).Err()
			cancel()
			c.observe(c.closeCtx, err)
		}
	}
}

// redisGet reads key's value from Redis. ErrMiss when absent (or unreadable).
func (c *Cache) redisGet(ctx context.Context, key string) (Entry, error) {
	return c.redisGetWithin(ctx, key, c.opts.OpTimeout)
}

func (c *Cache) redisGetWithin(ctx context.Context, key string, within time.Duration) (Entry, error) {
	octx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	return c.redisRead(ctx, octx, key)
}

// redisLookup is redisGetWithin for a request's lookup (Get), and no later
// than notAfter unless that is zero: its command is bounded by opContext,
// not by a context derived from the request's.
func (c *Cache) redisLookup(ctx context.Context, key string, within time.Duration, notAfter time.Time) (Entry, error) {
	octx, cancel := opContext(ctx, within, notAfter)
	defer cancel()
	return c.redisRead(ctx, octx, key)
}

// redisRead GETs key's sealed value within octx and opens it.
func (c *Cache) redisRead(ctx, octx context.Context, key string) (Entry, error) {
	rk := c.valueKey(key)
	b, err := c.rdb.Get(octx, rk).Bytes()
	c.observe(ctx, err)
	if errors.Is(err, redis.Nil) {
		return Entry{}, ErrMiss
	}
	if err != nil {
		return Entry{}, err
	}
	e, ok := c.open(rk, b)
	if !ok {
		return Entry{}, ErrMiss
	}
	return e, nil
}

func (c *Cache) redisSet(ctx context.Context, key string, e Entry, within time.Duration) error {
	octx, cancel := context.WithTimeout(ctx, within)
	err := c.rdb.Set(octx, c.valueKey(key), c.sealEntry(key, e), c.opts.Retention).Err()
	cancel()
	c.observe(ctx, err)
	return err
}

// Lua: delete KEYS[1] only while it holds ARGV[1]. 1 deleted, 0 absent, -1 held by another token.
var releaseScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if v == ARGV[1] then return redis.call("DEL", KEYS[1]) end
if v then return -1 end
return 0`)

// Lua: extend KEYS[1] to ARGV[2] ms only while it holds ARGV[1]. 1 renewed, 0 not ours.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end
return 0`)

// tryLock sets key to token for ttl if nobody holds it, waiting up to within for the answer.
func (c *Cache) tryLock(ctx context.Context, key, token string, ttl, within time.Duration) (bool, error) {
	octx, cancel := context.WithTimeout(ctx, within)
	ok, err := c.rdb.SetNX(octx, key, token, ttl).Result()
	cancel()
	c.observe(ctx, err)
	return ok, err
}

// fillAttempts is how many times a command of the fill path is sent when it times out, each
// attempt waiting twice as long as the one before (OpTimeout, 2x, 4x): on the fill path a lost
// answer costs a loader call. go-redis drops a connection whose command timed out, so a retry
// often runs on a new connection and waits for its handshake (HELLO, CLIENT SETINFO) through the
// same slow Redis as well: two or three replies, not one. With two attempts a Redis whose
// replies were all within twice OpTimeout still cost an extra load in one test run in five
// (TestSlowRedisIsNotDown). A frozen Redis is declared down by the breaker meanwhile, which ends
// the attempts; on a quiet runner its first cold fill may run out of LockTTL first, for a
// request that had already given up at its own wait.
const fillAttempts = 3

// persist runs op (a fill-path command, given its timeout) until it answers, fails otherwise
// than by a timeout, Redis is declared down, ctx ends, or fillAttempts timed out.
func (c *Cache) persist(ctx context.Context, op func(within time.Duration) error) error {
	var err error
	within := c.opts.OpTimeout
	for range fillAttempts {
		if err = op(within); err == nil || !isTimeout(err) || !c.redisUsable() || ctx.Err() != nil {
			return err
		}
		within *= 2
	}
	return err
}

// acquireFill takes the fill lock lk with token. A SET that timed out may still have been
// applied, and Redis may only be slow: rather than load at once (a second loader call in the
// fleet), it sends the SET again with more patience, and if an earlier attempt timed out it asks
// who holds the lock (the lock may be its own). When Redis never answers in time but still counts
// as up, it reports "held elsewhere", so that the caller waits for a value rather than loads
// beside a holder. An error means Redis failed otherwise; the caller then loads without the lock.
func (c *Cache) acquireFill(ctx context.Context, lk, token string) (bool, error) {
	var got, lost bool
	err := c.persist(ctx, func(within time.Duration) error {
		var err error
		got, err = c.tryLock(ctx, lk, token, c.opts.LockTTL, within)
		lost = lost || isTimeout(err)
		return err
	})
	switch {
	case err != nil:
		if isTimeout(err) && c.redisUsable() {
			return false, nil
		}
		return false, err
	case got || !lost:
		return got, nil
	}
	var holder string
	err = c.persist(ctx, func(within time.Duration) error {
		octx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		var err error
		holder, err = c.rdb.Get(octx, lk).Result()
		c.observe(ctx, err)
		return err
	})
	switch {
	case err == nil:
		return holder == token, nil
	case errors.Is(err, redis.Nil), isTimeout(err) && c.redisUsable():
		// Released meanwhile, or no answer: wait for the holder's value (waitFill stops early
		// when the lock is gone without one).
		return false, nil
	}
	return false, err
}

// unlock deletes key if it still holds token, waiting up to within for the answer. It returns
// the script's answer (1, 0 or -1).
func (c *Cache) unlock(ctx context.Context, key, token string, within time.Duration) (int64, error) {
	octx, cancel := context.WithTimeout(ctx, within)
	n, err := releaseScript.Run(octx, c.rdb, []string{key}, token).Int64()
	cancel()
	c.observe(ctx, err)
	return n, err
}

// lockHeld reports whether the fill lock of key exists.
func (c *Cache) lockHeld(ctx context.Context, key string) (bool, error) {
	octx, cancel := c.opCtx(ctx)
	n, err := c.rdb.Exists(octx, c.lockKey(key)).Result()
	cancel()
	c.observe(ctx, err)
	return n > 0, err
}

// RedisState says whether a Redis tier is configured and, if so, whether the
// last command reached it (the readiness endpoint reports both).
func (c *Cache) RedisState() (configured, up bool) {
	return c.rdb != nil, c.redisUsable()
}

// opContext bounds one Redis command of a lookup by within, by notAfter
// (unless zero) and by ctx's deadline, keeping ctx's values (the trace) but not its cancellation: a
// request's context ends only when the request does, after the command, and
// deriving a cancellable context from it registered the command with it
// (and, for the runner library's request context, armed its timer) on every
// hit.
func opContext(ctx context.Context, within time.Duration, notAfter time.Time) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(within)
	if !notAfter.IsZero() && notAfter.Before(deadline) {
		deadline = notAfter
	}
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}
