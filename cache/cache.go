package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/throttle"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tracing"
)

var (
	// ErrMiss: no value is cached for the key (Peek, GetState).
	ErrMiss = errors.New("cache: miss")
	// ErrLockHeld: another holder owns the lease now (returned, wrapped, by Lease.Release).
	ErrLockHeld = errors.New("cache: held by another owner")
)

// Source tells where a Get result came from.
type Source int

const (
	// SourceLocal: a fresh value from the in-process tier.
	SourceLocal Source = iota
	// SourceRedis: a fresh value from Redis (possibly filled by another process).
	SourceRedis
	// SourceLoader: this process just called the loader.
	SourceLoader
	// SourceStale: a value past its fresh age, served because a refresh is running
	// (Result.Refreshing) or because the loader failed (Result.LoadErr).
	SourceStale
)

func (s Source) String() string {
	switch s {
	case SourceLocal:
		return "local"
	case SourceRedis:
		return "redis"
	case SourceLoader:
		return "loader"
	case SourceStale:
		return "stale"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Entry is a cached value and the time its loader produced it. Value is shared: do not modify it.
type Entry struct {
	Value     []byte
	FetchedAt time.Time
}

// Age is how long ago the value was fetched.
func (e Entry) Age(now time.Time) time.Duration { return now.Sub(e.FetchedAt) }

// Policy sets the ages at which a value stops being fresh and stops being servable without a load.
// Values younger than Fresh are served as they are; values in [Fresh, Stale) are served while one
// background refresh runs; older values are reloaded first (and still served if that load fails,
// up to Options.Retention). Stale < Fresh counts as Stale == Fresh.
type Policy struct {
	Fresh, Stale time.Duration
	// Wait, when > 0, bounds everything past a fresh in-process hit (Redis,
	// waiting for a fill, loading). The hit itself needs no deadline, so the
	// caller need not make one (a context with a timer) for every request.
	Wait time.Duration
	// Now is the caller's time for this request, which the in-process hit
	// is judged by; zero: Get reads the clock.
	Now time.Time
}

// Result is the answer of Get.
type Result struct {
	Entry
	Source     Source
	Refreshing bool  // a background refresh was started or is running
	LoadErr    error // set with SourceStale when the loader failed
}

// Cache is a two-tier cache: a bounded in-process LRU in front of Redis. It is safe for concurrent use.
type Cache struct {
	rejectLog throttle.Every // the log line about values refused, at most once per rejectLogEvery

	opts    Options
	id      string // identifies this process on the invalidation channel
	local   *local
	aside   *local                // PeekRemote/SetRemote values when there is no Redis; never the request tier
	macs    sync.Pool             // *macState, keyed with opts.ValueSecret
	rdb     redis.UniversalClient // nil: in-process only
	up      atomic.Bool           // false while health says Redis is down (read on every Get)
	health  health
	closed  atomic.Bool
	flights group
	gens    [256]atomic.Uint64 // invalidation counters, by key hash
	onInv   atomic.Pointer[func([]string)]
	onRev   atomic.Pointer[func(string, *revMessage)] // the Revocations on this cache: a peer's revocation
	onAck   atomic.Pointer[func(string)]              // the Revocations on this cache: a peer holds one of ours
	onSub   atomic.Pointer[func()]                    // the Revocations on this cache: (re)subscribed
	mem     memStore                                  // leases, state and feeds without Redis

	closeCtx context.Context
	cancel   context.CancelFunc
	bgMu     sync.Mutex // orders wg.Add in startFill against Close
	wg       sync.WaitGroup
	psMu     sync.Mutex
	ps       *redis.PubSub
}

// New builds a Cache. A bad option is an error; an unreachable Redis is not: the cache then logs
// once, runs on the in-process tier and the loader, and reconnects by itself.
func New(ctx context.Context, opts *Options) (*Cache, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Cache{opts: o, id: randomToken(), local: newLocal(o.localEntries(), o.LocalMaxBytes),
		aside: newLocal(o.LocalSize, o.LocalMaxBytes/4)}
	c.health.now = time.Now
	c.flights.m = make(map[string]*call)
	c.closeCtx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if o.RedisURL == "" {
		return c, nil
	}
	if c.rdb, err = newRedisClient(o.RedisURL); err != nil {
		return nil, err
	}
	setRedisLogger.Do(func() { redis.SetLogger(redisLog{}) })
	c.up.Store(true)
	exportRedisUp()
	redisUp.Set(1)
	pctx, cancel := c.opCtx(ctx)
	err = c.rdb.Ping(pctx).Err()
	cancel()
	if err != nil && ctx.Err() == nil && c.health.forceDown(err) {
		// Nothing answered yet to weigh this failure against: start degraded, let the probe recover.
		c.markDown(err)
	}
	if err == nil {
		// Wait for the subscription to be confirmed, so that an invalidation published
		// right after New returns reaches this process.
		c.ps = c.rdb.Subscribe(c.closeCtx, c.opts.Channel)
		sctx, cancel := context.WithTimeout(c.closeCtx, max(c.opts.OpTimeout, time.Second))
		msg, err := c.ps.Receive(sctx)
		cancel()
		if _, ok := msg.(*redis.Subscription); !ok || err != nil {
			_ = c.ps.Close()
			c.ps = nil
		}
	}
	c.wg.Add(2)
	go c.probe()
	go c.subscribe(c.ps != nil)
	return c, nil
}

// Close stops background work and closes the Redis client. In-flight loads are cancelled.
func (c *Cache) Close() error {
	c.bgMu.Lock()
	already := c.closed.Swap(true)
	c.bgMu.Unlock()
	if already {
		return nil
	}
	c.cancel()
	c.psMu.Lock()
	if c.ps != nil {
		_ = c.ps.Close()
	}
	c.psMu.Unlock()
	c.wg.Wait()
	if c.rdb != nil {
		if err := c.rdb.Close(); err != nil {
			return fmt.Errorf("cache: close redis: %w", err)
		}
	}
	return nil
}

// gen returns the invalidation counter that covers key.
func (c *Cache) gen(key string) *atomic.Uint64 {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &c.gens[h%uint32(len(c.gens))]
}

// candidate is a value found in a tier; lastResort marks a local copy that Redis no longer has,
// usable only when the loader fails.
type candidate struct {
	Entry
	src        Source
	lastResort bool
}

// Get returns the value for key, loading it with load when no tier has a usable one.
//
//   - age < p.Fresh: returned from the in-process tier or Redis.
//   - p.Fresh <= age < p.Stale: returned as SourceStale with Refreshing set; one background refresh
//     per key runs.
//   - miss or age >= p.Stale: loaded now. One load per key runs in this process at a time
//     (concurrent callers share it), and a Redis lock (LockTTL) lets one process of the fleet load
//     while the others wait up to LockWait for its value before loading themselves.
//
// When the load fails and an older value exists (up to Retention), Get returns it as SourceStale
// with LoadErr set and a nil error; otherwise it returns the load error. Redis failures never fail
// a Get. A load runs at most LockTTL, detached from ctx's cancellation so that callers that give up
// do not cancel it for the others.
func (c *Cache) Get(ctx context.Context, key string, p Policy, load func(ctx context.Context) ([]byte, error)) (Result, error) {
	if p.Stale < p.Fresh {
		p.Stale = p.Fresh
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	var cand *candidate
	if le, ok := c.local.get(key); ok {
		age := now.Sub(le.fetched)
		switch {
		case age >= c.opts.Retention || future(now, le.fetched):
			// Dated ahead (this clock stepped back): not fresh until the clock catches up.
			c.local.remove(key)
		case age < p.Fresh && now.Sub(le.storedAt) < c.opts.LocalTTL:
			hitsLocal.Inc()
			return Result{Entry: Entry{Value: le.value, FetchedAt: le.fetched}, Source: SourceLocal}, nil
		default:
			cand = &candidate{Entry: Entry{Value: le.value, FetchedAt: le.fetched}, src: SourceLocal}
		}
	}

	// p.Wait bounds the whole Get, the Redis lookup included; its context
	// is armed only on the miss path below, which waits on a fill, so a
	// Redis hit arms one timer (its command's), not two.
	var waitUntil time.Time
	if p.Wait > 0 {
		waitUntil = time.Now().Add(p.Wait)
	}
	if c.redisUsable() {
		gen := c.gen(key)
		g := gen.Load()
		sctx, span := tracing.Start(ctx, c.opts.Tracer, "redis get")
		e, err := c.redisLookup(sctx, key, c.opts.OpTimeout, waitUntil)
		if span.IsRecording() {
			span.SetAttributes(attribute.Bool("cache.hit", err == nil))
		}
		tracing.End(span, redisFailure(err), "redis failed")
		switch {
		case err == nil:
			// Not if an invalidation arrived during the GET: the value read may be the dropped one.
			c.local.putIfGen(localEntry{key: key, value: e.Value, fetched: e.FetchedAt, storedAt: now}, gen, g)
			if cand == nil || !e.FetchedAt.Before(cand.FetchedAt) {
				cand = &candidate{Entry: e, src: SourceRedis}
			}
		case errors.Is(err, ErrMiss):
			// Redis is the shared truth: a local copy it does not have was invalidated
			// (message missed) or lost with Redis; keep it only as a last resort.
			if cand != nil {
				cand.lastResort = true
			}
		}
	}

	if cand != nil && !cand.lastResort {
		age := now.Sub(cand.FetchedAt)
		if age < p.Fresh {
			if cand.src == SourceRedis {
				hitsRedis.Inc()
			} else {
				hitsLocal.Inc()
			}
			return Result{Entry: cand.Entry, Source: cand.src}, nil
		}
		if age < p.Stale {
			staleRefreshing.Inc()
			c.startFill(ctx, key, load, &cand.Entry, p.Fresh)
			return Result{Entry: cand.Entry, Source: SourceStale, Refreshing: true}, nil
		}
	}

	missesTotal.Inc()
	var prev *Entry
	if cand != nil {
		prev = &cand.Entry
	}
	if !waitUntil.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, waitUntil)
		defer cancel()
	}
	// The wait for a fill, this process's (its span is this one's child) or one already running.
	mctx, span := tracing.Start(ctx, c.opts.Tracer, "cache miss")
	cl := c.startFill(mctx, key, load, prev, p.Fresh)
	var err error
	select {
	case <-cl.done:
		if cl.err == nil {
			tracing.End(span, nil, "")
			return Result{Entry: cl.entry, Source: cl.src}, nil
		}
		err = cl.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	tracing.End(span, err, "load failed")
	if cand != nil && now.Sub(cand.FetchedAt) < c.opts.Retention {
		staleLoadErr.Inc()
		return Result{Entry: cand.Entry, Source: SourceStale, LoadErr: err}, nil
	}
	return Result{}, fmt.Errorf("cache: load %s: %w", key, err)
}

// redisFailure is err unless it only says the key is not there.
func redisFailure(err error) error {
	if errors.Is(err, ErrMiss) {
		return nil
	}
	return err
}

// startFill joins the running fill of key or starts one.
func (c *Cache) startFill(ctx context.Context, key string, load func(context.Context) ([]byte, error), prev *Entry, fresh time.Duration) *call {
	cl, started := c.flights.join(key)
	if !started {
		return cl
	}
	c.bgMu.Lock()
	tracked := !c.closed.Load()
	if tracked {
		c.wg.Add(1)
	}
	c.bgMu.Unlock()
	go func() {
		if tracked {
			defer c.wg.Done()
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.LockTTL)
		stop := context.AfterFunc(c.closeCtx, cancel)
		defer func() {
			stop()
			cancel()
		}()
		e, src, err := c.fill(fctx, key, load, prev, fresh)
		c.flights.finish(key, cl, e, src, err)
	}()
	return cl
}

// fill loads key under the fleet-wide lock and stores the result in both tiers, unless claim
// finds the value another process loaded.
func (c *Cache) fill(ctx context.Context, key string, load func(context.Context) ([]byte, error), prev *Entry, fresh time.Duration) (_ Entry, _ Source, err error) {
	ctx, span := tracing.Start(ctx, c.opts.Tracer, "cache fill")
	defer func() { tracing.End(span, err, "load failed") }()
	gen := c.gen(key)
	g := gen.Load()
	if c.redisUsable() {
		lctx, lspan := tracing.Start(ctx, c.opts.Tracer, "redis fill lock")
		e, found, release := c.claim(lctx, key, prev, fresh)
		if lspan.IsRecording() {
			// found: another process's value; held: this process loads under the lock; neither:
			// it loads without (Redis failed, or the wait ran out).
			lspan.SetAttributes(attribute.Bool("cache.found", found), attribute.Bool("cache.lock_held", release != nil))
		}
		tracing.End(lspan, nil, "")
		if found {
			c.local.putIfGen(localEntry{key: key, value: e.Value, fetched: e.FetchedAt, storedAt: time.Now()}, gen, g)
			return e, SourceRedis, nil
		}
		if release != nil {
			defer release()
		}
	}
	// A value is as old as the question that produced it: a change made while the loader ran
	// may be missing from its answer, so the value's age counts from the start of the load.
	asked := fetchTime()
	v, err := load(ctx)
	if err != nil {
		loadsErr.Inc()
		return Entry{}, 0, err
	}
	loadsOK.Inc()
	if v == nil {
		v = []byte{}
	}
	e := Entry{Value: v, FetchedAt: asked}
	// Store only if no invalidation of this key arrived while loading: the load may predate it.
	if c.local.putIfGen(localEntry{key: key, value: e.Value, fetched: e.FetchedAt, storedAt: e.FetchedAt}, gen, g) &&
		c.redisUsable() {
		// Other processes wait for this value: a slow SET is worth more patience.
		sctx, sspan := tracing.Start(ctx, c.opts.Tracer, "redis set")
		serr := c.persist(sctx, func(within time.Duration) error { return c.redisSet(sctx, key, e, within) })
		tracing.End(sspan, serr, "redis failed")
	}
	return e, SourceLoader, nil
}

// fillRounds bounds how many holders in turn a fill waits for: a holder that lets the lock go
// without a value (its load failed) is replaced by one of its waiters, and the others wait again.
const fillRounds = 3

// claim settles who loads key. It returns another process's value (found), or release, the
// unlock of the fill lock it now holds (the caller loads, then releases), or neither: Redis failed
// or the waits ran out, and the caller loads without the lock. A value younger than fresh found
// in Redis once the lock is ours was stored by another process between our read and our lock: it
// is used instead of a second load. When the holder we waited for lets go without a value, the
// waiters take the lock again rather than all load at once (one load instead of one per process).
func (c *Cache) claim(ctx context.Context, key string, prev *Entry, fresh time.Duration) (e Entry, found bool, release func()) {
	lk, token := c.lockKey(key), randomToken()
	for range fillRounds {
		got, err := c.acquireFill(ctx, lk, token)
		if err != nil {
			return Entry{}, false, nil
		}
		if got {
			release = func() {
				uctx := context.WithoutCancel(ctx)
				_ = c.persist(uctx, func(within time.Duration) error {
					_, err := c.unlock(uctx, lk, token, within)
					return err
				})
			}
			err := c.persist(ctx, func(within time.Duration) (err error) { e, err = c.redisGetWithin(ctx, key, within); return err })
			if err == nil && time.Since(e.FetchedAt) < fresh && (prev == nil || e.FetchedAt.After(prev.FetchedAt)) {
				fillRecheckTotal.Inc()
				release()
				return e, true, nil
			}
			return Entry{}, false, release
		}
		e, outcome := c.waitFill(ctx, key, prev)
		switch outcome {
		case waitGotValue:
			waitFilled.Inc()
			return e, true, nil
		case waitLockReleased:
			waitReleased.Inc()
			continue
		}
		break
	}
	waitTimeout.Inc()
	return Entry{}, false, nil
}

// waitOutcome is how a wait for another process's fill ended.
type waitOutcome int

const (
	waitGotValue     waitOutcome = iota // the holder's value is in Redis
	waitLockReleased                    // the lock is gone and no new value came: the holder failed
	waitGaveUp                          // LockWait passed, ctx ended, or Redis failed
)

// waitFill polls Redis for a value of key newer than prev while another process holds the fill
// lock, for at most LockWait.
func (c *Cache) waitFill(ctx context.Context, key string, prev *Entry) (Entry, waitOutcome) {
	deadline := time.Now().Add(c.opts.LockWait)
	pause := 10 * time.Millisecond
	for {
		t := time.NewTimer(min(pause, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return Entry{}, waitGaveUp
		case <-t.C:
		}
		// Lock first, then value: the holder stores before it unlocks, so "no lock" followed by
		// "no new value" means the holder failed.
		held, herr := c.lockHeld(ctx, key)
		e, err := c.redisGet(ctx, key)
		if err == nil && (prev == nil || e.FetchedAt.After(prev.FetchedAt)) {
			return e, waitGotValue
		}
		if herr == nil && !held && (err == nil || errors.Is(err, ErrMiss)) {
			return Entry{}, waitLockReleased
		}
		// A slow answer is no reason to stop waiting (the holder's value is coming); an error
		// that is not a timeout, or Redis declared down, is.
		failed := herr != nil && !isTimeout(herr) || err != nil && !errors.Is(err, ErrMiss) && !isTimeout(err)
		if failed || !c.redisUsable() || !time.Now().Before(deadline) {
			return Entry{}, waitGaveUp
		}
		pause = min(pause*2, 100*time.Millisecond)
	}
}

// Peek returns the newest cached value of key without loading: the in-process tier while its copy
// is younger than LocalTTL, else Redis, else (Redis down) the in-process copy. ErrMiss when none.
func (c *Cache) Peek(ctx context.Context, key string) (Entry, error) {
	now := time.Now()
	le, lok := c.local.get(key)
	if lok && (now.Sub(le.fetched) >= c.opts.Retention || future(now, le.fetched)) {
		c.local.remove(key)
		lok = false
	}
	if lok && now.Sub(le.storedAt) < c.opts.LocalTTL {
		return Entry{Value: le.value, FetchedAt: le.fetched}, nil
	}
	if c.redisUsable() {
		gen := c.gen(key)
		g := gen.Load()
		e, err := c.redisGet(ctx, key)
		if err == nil {
			c.local.putIfGen(localEntry{key: key, value: e.Value, fetched: e.FetchedAt, storedAt: now}, gen, g)
			if !lok || !le.fetched.After(e.FetchedAt) {
				return e, nil
			}
		} else if errors.Is(err, ErrMiss) {
			return Entry{}, fmt.Errorf("cache: peek %s: %w", key, ErrMiss)
		}
	}
	if lok {
		return Entry{Value: le.value, FetchedAt: le.fetched}, nil
	}
	return Entry{}, fmt.Errorf("cache: peek %s: %w", key, ErrMiss)
}

// Set stores value for key in both tiers with FetchedAt = now. Other processes see it once their
// in-process copy is older than LocalTTL; use Invalidate to drop their copies at once. A Redis
// failure is returned, but the in-process tier keeps the value.
func (c *Cache) Set(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	e := Entry{Value: value, FetchedAt: fetchTime()}
	c.local.put(localEntry{key: key, value: e.Value, fetched: e.FetchedAt, storedAt: e.FetchedAt})
	if c.rdb == nil || c.closed.Load() {
		return nil
	}
	if err := c.redisSet(ctx, key, e, c.opts.OpTimeout); err != nil {
		return fmt.Errorf("cache: set %s: %w", key, err)
	}
	return nil
}

// OnInvalidate registers fn, called with the keys of each invalidation received from another
// process (after they were dropped here). Invalidate calls made in this process do not call it.
// fn runs on the subscription goroutine: keep it short. A later call replaces fn; nil removes it.
func (c *Cache) OnInvalidate(fn func(keys []string)) {
	if fn == nil {
		c.onInv.Store(nil)
		return
	}
	c.onInv.Store(&fn)
}

// dropLocal forgets keys in this process and makes running loads of them skip storing.
func (c *Cache) dropLocal(keys []string) {
	for _, k := range keys {
		c.gen(k).Add(1)
		c.local.remove(k)
	}
}

// flushLocal forgets every key in this process.
func (c *Cache) flushLocal() {
	for i := range c.gens {
		c.gens[i].Add(1)
	}
	c.local.flush()
}

// fetchTime is now at the millisecond precision Redis keeps, so both tiers agree on a value's age.
func fetchTime() time.Time { return time.Now().Truncate(time.Millisecond) }

// SetRemote stores value for key in the shared tier only (Redis), never in the in-process tier:
// for bookkeeping values (orgsync's last known list of a user) that must not take a place the
// request path needs. Without Redis they go to a separate in-process LRU, bounded like the
// in-process tier. A Redis failure is returned.
func (c *Cache) SetRemote(ctx context.Context, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	e := Entry{Value: value, FetchedAt: fetchTime()}
	if c.rdb == nil {
		c.aside.put(localEntry{key: key, value: e.Value, fetched: e.FetchedAt, storedAt: e.FetchedAt})
		return nil
	}
	if c.closed.Load() {
		return fmt.Errorf("cache: set %s: closed", key)
	}
	if err := c.redisSet(ctx, key, e, c.opts.OpTimeout); err != nil {
		return fmt.Errorf("cache: set %s: %w", key, err)
	}
	return nil
}

// PeekRemote returns what SetRemote stored for key (Redis, or the separate LRU without Redis).
// ErrMiss when absent; another error when Redis could not be asked.
func (c *Cache) PeekRemote(ctx context.Context, key string) (Entry, error) {
	if c.rdb == nil {
		le, ok := c.aside.get(key)
		if !ok || time.Since(le.fetched) >= c.opts.Retention {
			return Entry{}, fmt.Errorf("cache: peek %s: %w", key, ErrMiss)
		}
		return Entry{Value: le.value, FetchedAt: le.fetched}, nil
	}
	if !c.redisUsable() {
		return Entry{}, fmt.Errorf("cache: peek %s: redis unavailable", key)
	}
	e, err := c.redisGet(ctx, key)
	if err != nil {
		return Entry{}, fmt.Errorf("cache: peek %s: %w", key, err)
	}
	return e, nil
}
