package cache

import (
	"context"
	"fmt"
	"time"
)

// Lease is held by at most one process of the fleet (one Redis key holding a random token).
// Without Redis the process is the fleet, and the lease is exclusive within it.
type Lease struct {
	c     *Cache
	name  string
	token string
	ttl   time.Duration
}

// Name is the lease's name as given to AcquireLease.
func (l *Lease) Name() string { return l.name }

// AcquireLease takes the lease name for ttl if nobody holds it: (lease, true, nil). When another
// holder has it: (nil, false, nil). A Redis failure is an error: exclusivity cannot be known then,
// so the lease is not granted. The holder must Renew well before ttl passes.
func (c *Cache) AcquireLease(ctx context.Context, name string, ttl time.Duration) (*Lease, bool, error) {
	if ttl <= 0 {
		return nil, false, fmt.Errorf("cache: lease %s: ttl %s must be > 0", name, ttl)
	}
	l := &Lease{c: c, name: name, token: randomToken(), ttl: ttl}
	if c.rdb == nil {
		if !c.mem.acquire(name, l.token, ttl) {
			return nil, false, nil
		}
		return l, true, nil
	}
	ok, err := c.tryLock(ctx, c.leaseKey(name), l.token, ttl, c.opts.OpTimeout)
	if err != nil {
		return nil, false, fmt.Errorf("cache: lease %s: %w", name, err)
	}
	if !ok {
		return nil, false, nil
	}
	return l, true, nil
}

// Renew extends the lease by its ttl. (false, nil): the lease expired and may belong to another
// holder now; stop acting as the holder. (false, err): Redis failed; the lease may still run out.
func (l *Lease) Renew(ctx context.Context) (bool, error) {
	c := l.c
	if c.rdb == nil {
		return c.mem.renew(l.name, l.token, l.ttl), nil
	}
	octx, cancel := c.opCtx(ctx)
	n, err := renewScript.Run(octx, c.rdb, []string{c.leaseKey(l.name)}, l.token, l.ttl.Milliseconds()).Int64()
	cancel()
	c.observe(ctx, err)
	if err != nil {
		return false, fmt.Errorf("cache: renew lease %s: %w", l.name, err)
	}
	return n == 1, nil
}

// Release gives the lease up if this holder still has it. Releasing an expired lease is not an
// error; one that another holder took over returns ErrLockHeld (wrapped).
func (l *Lease) Release(ctx context.Context) error {
	c := l.c
	var n int64
	if c.rdb == nil {
		n = c.mem.release(l.name, l.token)
	} else {
		var err error
		if n, err = c.unlock(ctx, c.leaseKey(l.name), l.token, c.opts.OpTimeout); err != nil {
			return fmt.Errorf("cache: release lease %s: %w", l.name, err)
		}
	}
	if n < 0 {
		return fmt.Errorf("cache: release lease %s: %w", l.name, ErrLockHeld)
	}
	return nil
}
