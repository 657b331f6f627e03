package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoRedis: the call needs the fleet's shared tier and the cache was built without RedisURL.
var ErrNoRedis = errors.New("cache: no Redis configured")

// Claim is one caller's record of a name made by ClaimOnce.
type Claim struct {
	c     *Cache
	name  string
	token string
}

func (c *Cache) onceKey(n string) string { return c.opts.KeyPrefix + "once:" + n }

// ClaimOnce records name in Redis for ttl unless an earlier record of it still lasts (SET NX):
// (claim, true, nil) for the first caller of the fleet, (nil, false, nil) for every later one
// until ttl passes. It answers for the fleet only: without Redis it returns ErrNoRedis (the
// process is the fleet, and the caller keeps its own record), and while Redis is down or does
// not answer it returns an error, since whether name was claimed cannot be known then. A SET
// whose answer was lost may have been applied: it is sent again with the same token, and a
// record holding that token counts as this caller's.
func (c *Cache) ClaimOnce(ctx context.Context, name string, ttl time.Duration) (*Claim, bool, error) {
	if c.rdb == nil {
		return nil, false, fmt.Errorf("cache: claim %s: %w", name, ErrNoRedis)
	}
	if ttl <= 0 {
		return nil, false, fmt.Errorf("cache: claim %s: ttl %s must be > 0", name, ttl)
	}
	if !c.redisUsable() {
		return nil, false, fmt.Errorf("cache: claim %s: redis is down", name)
	}
	cl := &Claim{c: c, name: name, token: randomToken()}
	key := c.onceKey(name)
	var got, lost bool
	err := c.persist(ctx, func(within time.Duration) error {
		var err error
		got, err = c.tryLock(ctx, key, cl.token, ttl, within)
		lost = lost || isTimeout(err)
		return err
	})
	if err == nil && !got && lost {
		// Refused now, but an attempt that timed out may have set the token itself.
		octx, cancel := c.opCtx(ctx)
		var holder string
		holder, err = c.rdb.Get(octx, key).Result()
		cancel()
		c.observe(ctx, err)
		if errors.Is(err, redis.Nil) {
			err = errors.New("the record vanished between SET and GET")
		}
		got = err == nil && holder == cl.token
	}
	if err != nil {
		if lost {
			// A timed-out SET may still land: take back what may be ours, so that the
			// caller's next attempt is not refused by its own record.
			_ = cl.Release(context.WithoutCancel(ctx))
		}
		return nil, false, fmt.Errorf("cache: claim %s: %w", name, err)
	}
	if !got {
		return nil, false, nil
	}
	return cl, true, nil
}

// Release deletes the record if it still holds this claim's token, so that the name can be
// claimed again (the claimed work failed and will be retried). Releasing an expired claim is not
// an error; one that another caller took over returns ErrLockHeld (wrapped).
func (cl *Claim) Release(ctx context.Context) error {
	n, err := cl.c.unlock(ctx, cl.c.onceKey(cl.name), cl.token, cl.c.opts.OpTimeout)
	if err != nil {
		return fmt.Errorf("cache: release claim %s: %w", cl.name, err)
	}
	if n < 0 {
		return fmt.Errorf("cache: release claim %s: %w", cl.name, ErrLockHeld)
	}
	return nil
}
