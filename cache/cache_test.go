package cache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
)

var ctx = context.Background()

// modes runs f against the in-process tier alone and against Redis (when REDIS_TEST_URL is set).
func modes(t *testing.T, f func(t *testing.T, o Options)) {
	t.Run("local", func(t *testing.T) { f(t, Options{}) })
	t.Run("redis", func(t *testing.T) {
		f(t, Options{RedisURL: needEnv(t, "REDIS_TEST_URL"), KeyPrefix: testPrefix(t), OpTimeout: time.Second})
	})
}

func TestLocalLRU(t *testing.T) {
	l := newLocal(3, 1<<20)
	now := time.Now()
	for i := range 4 {
		l.put(localEntry{key: strconv.Itoa(i), value: []byte{byte(i)}, fetched: now})
	}
	_, ok := l.get("0")
	isTrue(t, !ok, "oldest entry evicted")
	_, _ = l.get("1") // 1 becomes most recent; 2 is now the oldest
	l.put(localEntry{key: "4", fetched: now})
	_, ok = l.get("2")
	isTrue(t, !ok, "least recently used entry evicted")
	equal(t, l.len(), 3, "size bound")

	// An older value never replaces a newer one.
	l.put(localEntry{key: "1", value: []byte("old"), fetched: now.Add(-time.Minute)})
	e, _ := l.get("1")
	equal(t, e.value, []byte{1})

	// putIfGen refuses after an invalidation.
	var g atomic.Uint64
	want := g.Load()
	g.Add(1)
	isTrue(t, !l.putIfGen(localEntry{key: "9", fetched: now}, &g, want), "stale generation refused")
	_, ok = l.get("9")
	isTrue(t, !ok)
	l.flush()
	equal(t, l.len(), 0)
}

// A tier that is off (CACHE_LOCAL_MAX_ENTRIES=0) stores nothing, yet still tells the fill path
// whether an invalidation arrived during its load: that answer decides whether Redis gets the value.
func TestLocalTierOffStillReportsInvalidations(t *testing.T) {
	l := newLocal(0, 1<<20)
	var g atomic.Uint64
	want := g.Load()
	isTrue(t, l.putIfGen(localEntry{key: "k", fetched: time.Now()}, &g, want), "no invalidation: the fill may go on to Redis")
	_, ok := l.get("k")
	isTrue(t, !ok, "a tier that is off holds nothing")
	g.Add(1)
	isTrue(t, !l.putIfGen(localEntry{key: "k", fetched: time.Now()}, &g, want), "invalidated during the load: refused")
}

func TestGetTiersAndFetchTime(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	a, b := newTestCache(t, o), newTestCache(t, o)
	p := Policy{Fresh: time.Minute, Stale: time.Hour}
	var l counter

	before := time.Now().Truncate(time.Millisecond)
	r, err := a.Get(ctx, "u1", p, l.load("v"))
	noErr(t, err)
	equal(t, r.Source, SourceLoader)
	equal(t, string(r.Value), "v1")
	isTrue(t, !r.FetchedAt.Before(before) && !r.FetchedAt.After(time.Now()), "fetch time is the load time")

	r, err = a.Get(ctx, "u1", p, l.load("v"))
	noErr(t, err)
	equal(t, r.Source, SourceLocal)

	// Another process finds it in Redis with the same fetch time, then in its own tier.
	r2, err := b.Get(ctx, "u1", p, l.load("v"))
	noErr(t, err)
	equal(t, r2.Source, SourceRedis)
	equal(t, string(r2.Value), "v1")
	isTrue(t, r2.FetchedAt.Equal(r.FetchedAt), "fetch time travels through Redis: ", r2.FetchedAt, r.FetchedAt)
	r2, err = b.Get(ctx, "u1", p, l.load("v"))
	noErr(t, err)
	equal(t, r2.Source, SourceLocal)
	equal(t, l.n.Load(), int64(1), "loads")

	// The stored form: version byte, unix ms, value; kept for Retention.
	raw := rawClient(t, url)
	b1, err := raw.Get(ctx, o.KeyPrefix+"v:u1").Bytes()
	noErr(t, err)
	e, ok := a.open(a.valueKey("u1"), b1)
	isTrue(t, ok, "envelope decodes")
	equal(t, string(e.Value), "v1")
	ttl, err := raw.PTTL(ctx, o.KeyPrefix+"v:u1").Result()
	noErr(t, err)
	isTrue(t, ttl > 23*time.Hour && ttl <= 24*time.Hour, "retention ttl ", ttl)

	// Peek does not load.
	pe, err := b.Peek(ctx, "u1")
	noErr(t, err)
	equal(t, string(pe.Value), "v1")
	_, err = b.Peek(ctx, "nobody")
	isTrue(t, errors.Is(err, ErrMiss) && !errors.Is(err, redis.Nil), "Peek miss is ErrMiss, not redis.Nil: ", err)

	// Set writes both tiers.
	noErr(t, a.Set(ctx, "u2", []byte("set")))
	r2, err = b.Get(ctx, "u2", p, l.load("v"))
	noErr(t, err)
	equal(t, r2.Source, SourceRedis)
	equal(t, string(r2.Value), "set")
}

func TestFreshStaleRefresh(t *testing.T) {
	modes(t, func(t *testing.T, o Options) {
		c := newTestCache(t, o)
		p := Policy{Fresh: 100 * time.Millisecond, Stale: 10 * time.Second}
		l := counter{delay: 50 * time.Millisecond}

		r, err := c.Get(ctx, "k", p, l.load("v"))
		noErr(t, err)
		equal(t, string(r.Value), "v1")
		time.Sleep(120 * time.Millisecond)

		// Past fresh: served at once, one background refresh for all callers.
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := c.Get(ctx, "k", p, l.load("v"))
				if err != nil || r.Source != SourceStale || !r.Refreshing || string(r.Value) != "v1" {
					t.Errorf("stale get: %+v %v", r, err)
				}
			}()
		}
		wg.Wait()
		eventually(t, time.Second, "refreshed value", func() bool {
			r, err := c.Get(ctx, "k", p, l.load("v"))
			return err == nil && string(r.Value) == "v2" && r.Source == SourceLocal
		})
		equal(t, l.n.Load(), int64(2), "loads")

		// Past stale: loaded before answering.
		p2 := Policy{Fresh: 10 * time.Millisecond, Stale: 20 * time.Millisecond}
		time.Sleep(30 * time.Millisecond)
		r, err = c.Get(ctx, "k", p2, l.load("v"))
		noErr(t, err)
		equal(t, r.Source, SourceLoader)
		equal(t, string(r.Value), "v3")
	})
}

func TestLoaderErrorServesStale(t *testing.T) {
	modes(t, func(t *testing.T, o Options) {
		c := newTestCache(t, o)
		p := Policy{Fresh: 20 * time.Millisecond, Stale: 40 * time.Millisecond}
		var l counter

		// Nothing cached: the load error is returned.
		l.fail.Store(true)
		_, err := c.Get(ctx, "k", p, l.load("v"))
		isTrue(t, errors.Is(err, errLoader), "cold miss returns the load error: ", err)

		l.fail.Store(false)
		r, err := c.Get(ctx, "k", p, l.load("v"))
		noErr(t, err)
		first := r.Entry

		// Past stale, Keycloak down: the last known value, with the error.
		time.Sleep(60 * time.Millisecond)
		l.fail.Store(true)
		r, err = c.Get(ctx, "k", p, l.load("v"))
		noErr(t, err)
		equal(t, r.Source, SourceStale)
		isTrue(t, errors.Is(r.LoadErr, errLoader), "LoadErr set: ", r.LoadErr)
		equal(t, string(r.Value), string(first.Value))
		isTrue(t, r.FetchedAt.Equal(first.FetchedAt), "keeps its fetch time")

		// In the refresh window a failing background refresh keeps the old value.
		l.fail.Store(false)
		r, err = c.Get(ctx, "k", Policy{Fresh: 0, Stale: 0}, l.load("v"))
		noErr(t, err)
		equal(t, r.Source, SourceLoader)
		l.fail.Store(true)
		time.Sleep(25 * time.Millisecond)
		wide := Policy{Fresh: 20 * time.Millisecond, Stale: time.Minute}
		n := l.n.Load()
		r, err = c.Get(ctx, "k", wide, l.load("v"))
		noErr(t, err)
		equal(t, r.Source, SourceStale)
		isTrue(t, r.Refreshing)
		isTrue(t, r.LoadErr == nil)
		eventually(t, time.Second, "refresh attempted", func() bool { return l.n.Load() > n })
		r, err = c.Get(ctx, "k", wide, l.load("v"))
		noErr(t, err)
		equal(t, r.Source, SourceStale, "still the old value after the failed refresh")
	})
}

func TestRetentionBoundsStale(t *testing.T) {
	c := newTestCache(t, Options{Retention: 50 * time.Millisecond})
	p := Policy{Fresh: 10 * time.Millisecond, Stale: 20 * time.Millisecond}
	var l counter
	_, err := c.Get(ctx, "k", p, l.load("v"))
	noErr(t, err)
	time.Sleep(60 * time.Millisecond)
	l.fail.Store(true)
	_, err = c.Get(ctx, "k", p, l.load("v"))
	isTrue(t, errors.Is(err, errLoader), "nothing served beyond Retention: ", err)
}

func TestSingleflightInProcess(t *testing.T) {
	modes(t, func(t *testing.T, o Options) {
		c := newTestCache(t, o)
		l := counter{delay: 100 * time.Millisecond}
		p := Policy{Fresh: time.Minute}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := c.Get(ctx, "cold", p, l.load("v"))
				if err != nil || string(r.Value) != "v1" {
					t.Errorf("get: %+v %v", r, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		equal(t, l.n.Load(), int64(1), "loads for 50 concurrent cold gets")
	})
}

func TestCallerGivesUpLoadGoesOn(t *testing.T) {
	c := newTestCache(t, Options{})
	l := counter{delay: 100 * time.Millisecond}
	p := Policy{Fresh: time.Minute}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	_, err := c.Get(short, "k", p, l.load("v"))
	isTrue(t, errors.Is(err, context.DeadlineExceeded), "caller's deadline: ", err)
	// The load was not cancelled with the first caller: its result lands in the cache.
	eventually(t, time.Second, "load completed", func() bool {
		_, err := c.Peek(ctx, "k")
		return err == nil
	})
	r, err := c.Get(ctx, "k", p, l.load("v"))
	noErr(t, err)
	equal(t, r.Source, SourceLocal)
	equal(t, l.n.Load(), int64(1))
}

func TestTwoProcessesOneLoad(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	a, b := newTestCache(t, o), newTestCache(t, o)
	l := counter{delay: 200 * time.Millisecond}
	p := Policy{Fresh: time.Minute}
	var wg sync.WaitGroup
	start := make(chan struct{})
	var sources sync.Map
	for i := range 50 {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := c.Get(ctx, "cold", p, l.load("v"))
			if err != nil || string(r.Value) != "v1" {
				t.Errorf("get: %+v %v", r, err)
				return
			}
			sources.Store(r.Source, true)
		}()
	}
	close(start)
	wg.Wait()
	equal(t, l.n.Load(), int64(1), "loads across two processes for 50 concurrent cold gets")
	_, viaRedis := sources.Load(SourceRedis)
	isTrue(t, viaRedis, "the waiting process got the other's fill through Redis")
}

func TestLockWaitTimeoutLoadsItself(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second, LockWait: 50 * time.Millisecond}
	c := newTestCache(t, o)
	// A stuck holder in another process: the lock exists, no value comes.
	raw := rawClient(t, url)
	noErr(t, raw.Set(ctx, o.KeyPrefix+"lock:k", "someone", time.Minute).Err())
	var l counter
	begin := time.Now()
	r, err := c.Get(ctx, "k", Policy{Fresh: time.Minute}, l.load("v"))
	noErr(t, err)
	equal(t, r.Source, SourceLoader)
	isTrue(t, time.Since(begin) >= 50*time.Millisecond, "waited LockWait first")
	// The lock it did not own is left alone.
	v, err := raw.Get(ctx, o.KeyPrefix+"lock:k").Result()
	noErr(t, err)
	equal(t, v, "someone")
}

func TestInvalidationFanOut(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	a, b := newTestCache(t, o), newTestCache(t, o)
	p := Policy{Fresh: time.Minute}
	var l counter
	got := make(chan []string, 1)
	b.OnInvalidate(func(keys []string) { got <- keys })

	for _, c := range []*Cache{a, b} {
		_, err := c.Get(ctx, "u1", p, l.load("v"))
		noErr(t, err)
		_, err = c.Get(ctx, "u2", p, l.load("v"))
		noErr(t, err)
	}
	_, ok := b.local.get("u1")
	isTrue(t, ok, "b holds u1 locally")

	begin := time.Now()
	noErr(t, a.Invalidate(ctx, "u1"))
	_, ok = a.local.get("u1")
	isTrue(t, !ok, "dropped at once where invalidated")
	eventually(t, 200*time.Millisecond, "b drops u1", func() bool {
		_, ok := b.local.get("u1")
		return !ok
	})
	t.Logf("fan-out took %s", time.Since(begin))
	select {
	case keys := <-got:
		equal(t, keys, []string{"u1"})
	case <-time.After(time.Second):
		t.Fatal("OnInvalidate not called")
	}
	_, ok = b.local.get("u2")
	isTrue(t, ok, "other keys stay")

	// Both processes now miss and load again (once: one fill for the fleet).
	n := l.n.Load()
	r, err := b.Get(ctx, "u1", p, l.load("v"))
	noErr(t, err)
	equal(t, r.Source, SourceLoader)
	r, err = a.Get(ctx, "u1", p, l.load("v"))
	noErr(t, err)
	equal(t, r.Source, SourceRedis)
	equal(t, l.n.Load(), n+1)
}

func TestInvalidateDuringLoad(t *testing.T) {
	modes(t, func(t *testing.T, o Options) {
		c := newTestCache(t, o)
		release := make(chan struct{})
		started := make(chan struct{})
		load := func(context.Context) ([]byte, error) {
			close(started)
			<-release
			return []byte("before-change"), nil
		}
		done := make(chan Result)
		go func() {
			r, err := c.Get(ctx, "k", Policy{Fresh: time.Minute}, load)
			if err != nil {
				t.Error(err)
			}
			done <- r
		}()
		<-started
		noErr(t, c.Invalidate(ctx, "k"))
		close(release)
		r := <-done
		equal(t, string(r.Value), "before-change", "the caller still gets its answer")
		_, err := c.Peek(ctx, "k")
		isTrue(t, errors.Is(err, ErrMiss), "a load that overlapped an invalidation is not stored: ", err)
	})
}

func TestRedisUnreachableAtStart(t *testing.T) {
	c := newTestCache(t, Options{RedisURL: "redis://127.0.0.1:1/0", KeyPrefix: testPrefix(t)})
	isTrue(t, !c.up.Load(), "marked down")
	var l counter
	p := Policy{Fresh: time.Minute}
	for i := range 5 {
		r, err := c.Get(ctx, "k", p, l.load("v"))
		noErr(t, err)
		want := SourceLocal
		if i == 0 {
			want = SourceLoader
		}
		equal(t, r.Source, want)
	}
	equal(t, l.n.Load(), int64(1))
	// Redis-only operations report the outage.
	_, _, err := c.AcquireLease(ctx, "w", time.Second)
	isTrue(t, err != nil, "no lease without Redis")
	isTrue(t, c.Invalidate(ctx, "k") != nil, "invalidate reports it could not fan out")
	_, err = c.Peek(ctx, "k")
	isTrue(t, errors.Is(err, ErrMiss), "dropped locally anyway")
}

func TestRedisKilledMidRun(t *testing.T) {
	srv := redistest.Start(t)
	o := Options{RedisURL: srv.URL(), KeyPrefix: "killed:", OpTimeout: time.Second}
	a, b := newTestCache(t, o), newTestCache(t, o)
	p := Policy{Fresh: time.Minute}
	var l counter
	for i := range 10 {
		_, err := a.Get(ctx, "warm"+strconv.Itoa(i), p, l.load("v"))
		noErr(t, err)
	}

	srv.Kill()
	// Every Get keeps answering: warm keys from the in-process tier, cold ones from the loader.
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "warm" + strconv.Itoa(i%10)
			if i%2 == 1 {
				key = "cold" + strconv.Itoa(i)
			}
			for range 5 {
				if _, err := a.Get(ctx, key, p, l.load("v")); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	equal(t, failed.Load(), int64(0), "failed gets while Redis is down")
	// One failure is not an outage (a slow Redis times out too): Redis is declared down once
	// commands kept failing for healthSilence.
	n := 0
	eventually(t, 3*time.Second, "a noticed the outage", func() bool {
		n++
		_, err := a.Get(ctx, "cold-probe"+strconv.Itoa(n), p, l.load("v"))
		noErr(t, err)
		return !a.up.Load()
	})

	srv.Start()
	eventually(t, 5*time.Second, "a recovers", a.up.Load)
	// Fills reach Redis again.
	_, err := a.Get(ctx, "after", p, l.load("v"))
	noErr(t, err)
	raw := rawClient(t, srv.URL())
	_, err = raw.Get(ctx, "killed:v:after").Bytes()
	noErr(t, err)
	// And invalidations fan out again once both subscriptions are back.
	eventually(t, 10*time.Second, "invalidation from b reaches a after the restart", func() bool {
		if _, err := a.Get(ctx, "after", p, l.load("v")); err != nil {
			return false
		}
		if err := b.Invalidate(ctx, "after"); err != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
		_, ok := a.local.get("after")
		return !ok
	})
}

func TestRedisFlushOnResubscribe(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestCache(t, Options{RedisURL: srv.URL(), KeyPrefix: "flush:", OpTimeout: time.Second})
	noErr(t, c.Set(ctx, "k", []byte("v")))
	raw := rawClient(t, srv.URL())
	// Drop the subscriber's connection: invalidations may be missed until it is back.
	noErr(t, raw.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err())
	eventually(t, 5*time.Second, "local tier flushed after resubscribe", func() bool {
		_, ok := c.local.get("k")
		return !ok
	})
}

func TestLease(t *testing.T) {
	modes(t, func(t *testing.T, o Options) {
		a := newTestCache(t, o)
		b := a
		if o.RedisURL != "" {
			b = newTestCache(t, o)
		}
		la, ok, err := a.AcquireLease(ctx, "watcher", 150*time.Millisecond)
		noErr(t, err)
		isTrue(t, ok && la != nil, "first holder gets it")
		_, ok, err = b.AcquireLease(ctx, "watcher", time.Second)
		noErr(t, err)
		isTrue(t, !ok, "second holder does not")
		ok, err = la.Renew(ctx)
		noErr(t, err)
		isTrue(t, ok, "holder renews")
		noErr(t, la.Release(ctx))
		lb, ok, err := b.AcquireLease(ctx, "watcher", 100*time.Millisecond)
		noErr(t, err)
		isTrue(t, ok, "free after release")

		// Expiry without renewal hands it over; the old holder learns it lost it.
		time.Sleep(150 * time.Millisecond)
		la, ok, err = a.AcquireLease(ctx, "watcher", time.Second)
		noErr(t, err)
		isTrue(t, ok, "free after expiry")
		ok, err = lb.Renew(ctx)
		noErr(t, err)
		isTrue(t, !ok, "expired holder cannot renew")
		err = lb.Release(ctx)
		isTrue(t, errors.Is(err, ErrLockHeld), "release of a taken-over lease: ", err)
		noErr(t, la.Release(ctx))
		noErr(t, la.Release(ctx)) // releasing twice is fine
	})
}

func TestStateAndFeed(t *testing.T) {
	modes(t, func(t *testing.T, o Options) {
		c := newTestCache(t, o)
		_, err := c.GetState(ctx, "pos")
		isTrue(t, errors.Is(err, ErrMiss) && !errors.Is(err, redis.Nil), "unset state is ErrMiss: ", err)
		noErr(t, c.SetState(ctx, "pos", "1700000000000"))
		v, err := c.GetState(ctx, "pos")
		noErr(t, err)
		equal(t, v, "1700000000000")

		es, err := c.ReadFeed(ctx, "changes", 10)
		noErr(t, err)
		equal(t, len(es), 0)
		for i := range 5 {
			noErr(t, c.AppendFeed(ctx, "changes", 1000, map[string]string{"user": "u" + strconv.Itoa(i), "op": "add"}))
		}
		es, err = c.ReadFeed(ctx, "changes", 3)
		noErr(t, err)
		equal(t, len(es), 3)
		for i, e := range es {
			equal(t, e.Fields, map[string]string{"user": "u" + strconv.Itoa(i+2), "op": "add"})
			isTrue(t, time.Since(e.Time) < time.Minute, "entry time from its ID")
			if i > 0 {
				isTrue(t, es[i-1].ID != e.ID, "distinct IDs")
			}
		}

		// Capping: in-process exact, Redis approximate (whole blocks of ~100).
		for i := range 1000 {
			noErr(t, c.AppendFeed(ctx, "capped", 10, map[string]string{"n": strconv.Itoa(i)}))
		}
		es, err = c.ReadFeed(ctx, "capped", 5000)
		noErr(t, err)
		if o.RedisURL == "" {
			equal(t, len(es), 10)
		} else {
			isTrue(t, len(es) >= 10 && len(es) <= 10+100, "capped near 10: ", len(es))
		}
		equal(t, es[len(es)-1].Fields["n"], "999", "newest last")

		isTrue(t, c.AppendFeed(ctx, "x", 0, map[string]string{"a": "b"}) != nil, "maxLen must be > 0")
	})
}

func TestSourceString(t *testing.T) {
	for s, want := range map[Source]string{SourceLocal: "local", SourceRedis: "redis", SourceLoader: "loader", SourceStale: "stale", 9: "Source(9)"} {
		equal(t, s.String(), want)
	}
	_ = fmt.Sprint(SourceStale)
}

// A stand-in that accepts connections and never answers: it injects timeouts, nothing else.
func blackhole(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return "redis://" + ln.Addr().String() + "/0"
}

func TestRedisTimeoutsDoNotStallGets(t *testing.T) {
	begin := time.Now()
	c := newTestCache(t, Options{RedisURL: blackhole(t), OpTimeout: 50 * time.Millisecond})
	isTrue(t, time.Since(begin) < time.Second, "New returns after one OpTimeout: ", time.Since(begin))
	isTrue(t, !c.up.Load(), "marked down")
	var l counter
	for range 20 {
		begin := time.Now()
		_, err := c.Get(ctx, "k"+strconv.Itoa(int(l.n.Load())), Policy{Fresh: time.Minute}, l.load("v"))
		noErr(t, err)
		isTrue(t, time.Since(begin) < 20*time.Millisecond, "no Redis wait on the Get path while down: ", time.Since(begin))
	}
}

func TestRedisWrongPassword(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right")
	c := newTestCache(t, Options{RedisURL: fmt.Sprintf("redis://:wrong@127.0.0.1:%d/0", srv.Port()), OpTimeout: time.Second})
	isTrue(t, !c.up.Load(), "a refused login runs degraded")
	var l counter
	_, err := c.Get(ctx, "k", Policy{Fresh: time.Minute}, l.load("v"))
	noErr(t, err)

	ok := newTestCache(t, Options{RedisURL: fmt.Sprintf("redis://:right@127.0.0.1:%d/0", srv.Port()), OpTimeout: time.Second})
	isTrue(t, ok.up.Load(), "the right password connects")
}

// Policy.Wait bounds the whole Get when Redis stalls too: the Redis lookup
// and the wait on the fill share the one deadline (the lookup does not get
// a Wait of its own before the fill's).
func TestPolicyWaitBoundsAStalledRedisAndALoad(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartSlowProxy(t, srv.Addr())
	c := newTestCache(t, Options{RedisURL: proxy.URL(), KeyPrefix: "stall:", OpTimeout: 5 * time.Second})
	isTrue(t, c.redisUsable(), "Redis up before the stall")
	proxy.SetDelay(func() time.Duration { return 3 * time.Second })
	const wait = 400 * time.Millisecond
	start := time.Now()
	_, err := c.Get(context.Background(), "slow", Policy{Fresh: time.Minute, Wait: wait},
		func(ctx context.Context) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
	took := time.Since(start)
	isTrue(t, err != nil, "a load past Wait must fail")
	isTrue(t, took < wait+wait/2, "Get took ", took, " with Wait ", wait, ": the stalled lookup and the load each waited")
}

// Policy.Wait bounds a load (and anything past a fresh in-process hit), so a
// caller need not build a deadline for every request.
func TestPolicyWaitBoundsALoad(t *testing.T) {
	c := newTestCache(t, Options{})
	start := time.Now()
	_, err := c.Get(context.Background(), "slow", Policy{Fresh: time.Minute, Wait: 50 * time.Millisecond},
		func(ctx context.Context) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
	if err == nil {
		t.Fatal("a load past Wait must fail")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the load was not cut at Wait: %s", d)
	}

	_, err = c.Get(context.Background(), "fast", Policy{Fresh: time.Minute, Wait: 50 * time.Millisecond},
		func(context.Context) ([]byte, error) { return []byte("v"), nil })
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Get(context.Background(), "fast", Policy{Fresh: time.Minute, Wait: time.Nanosecond},
		func(context.Context) ([]byte, error) { return nil, errors.New("not called") })
	if err != nil || string(res.Value) != "v" {
		t.Fatalf("a fresh in-process hit needs no time: %q, %v", res.Value, err)
	}
}

// pipelineHook runs before once, just before the first pipeline that deletes
// a key reaches Redis: the moment an invalidation has dropped the in-process
// copy but Redis still holds the value.
type pipelineHook struct {
	once   sync.Once
	before func()
}

func (h *pipelineHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h *pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if cmd.Name() == "del" {
				h.once.Do(h.before)
				break
			}
		}
		return next(ctx, cmds)
	}
}

// A read of Redis that lands between the invalidation's local drop and its
// Redis DEL finds the old value, and must not put it back in the in-process
// tier: there it would be served for LocalTTL (5 s) after Keycloak changed
// (seen as a 5.3 s tail by test/integration TestAccessRuleLatency).
func TestInvalidateRacingARedisRead(t *testing.T) {
	c := newTestCache(t, Options{RedisURL: needEnv(t, "REDIS_TEST_URL"), KeyPrefix: testPrefix(t), OpTimeout: time.Second})
	p := Policy{Fresh: time.Minute}
	var old, fresh counter
	_, err := c.Get(ctx, "k", p, old.load("before-change"))
	noErr(t, err)
	c.local.remove("k") // as after LocalTTL: the next read asks Redis
	hook := &pipelineHook{before: func() {
		r, err := c.Get(ctx, "k", p, fresh.load("after-change"))
		noErr(t, err)
		equal(t, string(r.Value), "before-change1", "the racing read sees Redis before the DEL")
	}}
	c.rdb.AddHook(hook)
	noErr(t, c.Invalidate(ctx, "k"))
	r, err := c.Get(ctx, "k", p, fresh.load("after-change"))
	noErr(t, err)
	equal(t, string(r.Value), "after-change1", "the value read before the DEL is not served after the invalidation")
}

// TestPolicyNowJudgesTheLocalHit: the caller's time, when given, is what
// the in-process entry's freshness is judged by; zero reads the clock.
func TestPolicyNowJudgesTheLocalHit(t *testing.T) {
	c := newTestCache(t, Options{})
	p := Policy{Fresh: time.Minute, Stale: time.Hour}
	var l counter
	r, err := c.Get(ctx, "u1", p, l.load("v"))
	noErr(t, err)
	equal(t, r.Source, SourceLoader)
	p.Now = time.Now()
	r, err = c.Get(ctx, "u1", p, l.load("v"))
	noErr(t, err)
	equal(t, r.Source, SourceLocal)
	p.Now = time.Now().Add(2 * time.Minute)
	r, err = c.Get(ctx, "u1", p, l.load("v"))
	noErr(t, err)
	equal(t, r.Source, SourceStale, "past Fresh at the caller's time")
	isTrue(t, r.Refreshing, "a refresh started")
}

// The entry last put at the front is read without the tier's lock (a
// user's run of requests writes nothing shared); what an invalidation,
// a flush, a newer value or an eviction changed is never served from it.
func TestLocalHotEntry(t *testing.T) {
	// The hot entry's read without the lock is lru.Order's (TestHotEntryIsReadWithoutTheLock);
	// here, that what the tier changes is never served from it afterwards.
	now := time.Now()
	l := newLocal(4, 1<<20)
	l.put(localEntry{key: "a", value: []byte("1"), fetched: now})
	e, _ := l.get("a")
	equal(t, e.value, []byte("1"))

	l.remove("a")
	_, ok := l.get("a")
	isTrue(t, !ok, "invalidated")

	l.put(localEntry{key: "a", value: []byte("1"), fetched: now})
	_, _ = l.get("a")
	l.put(localEntry{key: "a", value: []byte("2"), fetched: now.Add(time.Second)})
	e, _ = l.get("a")
	equal(t, e.value, []byte("2"), "newer value")

	l.flush()
	_, ok = l.get("a")
	isTrue(t, !ok, "flushed")

	l.put(localEntry{key: "a", value: []byte("1"), fetched: now})
	_, _ = l.get("a")
	for i := range 4 {
		l.put(localEntry{key: strconv.Itoa(i), fetched: now})
	}
	_, ok = l.get("a")
	isTrue(t, !ok, "evicted")
}

// Under concurrent puts, invalidations and gets, a get returns its own
// key's value.
func TestLocalHotEntryUnderConcurrency(t *testing.T) {
	l := newLocal(8, 1<<20)
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20000 {
				k := strconv.Itoa((g + i) % 12)
				switch i % 5 {
				case 0:
					l.put(localEntry{key: k, value: []byte(k), fetched: now.Add(time.Duration(i))})
				case 1:
					l.remove(k)
				default:
					if e, ok := l.get(k); ok && (e.key != k || string(e.value) != k) {
						t.Errorf("get(%s) = %s/%s: another key's entry", k, e.key, e.value)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
