package cache

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func benchLoad(context.Context) ([]byte, error) { return []byte(`["acme","globex"]`), nil }

// BenchmarkGetLocalHit is the orgsync hot path: a fresh value in the in-process tier.
func BenchmarkGetLocalHit(b *testing.B) { benchHit(b, Options{}, SourceLocal) }

// BenchmarkGetLocalHitParallel spreads hits over 1000 keys on all CPUs (one lock guards the LRU).
func BenchmarkGetLocalHitParallel(b *testing.B) {
	c := newTestCache(b, Options{})
	p := Policy{Fresh: time.Hour, Stale: 2 * time.Hour}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "user" + strconv.Itoa(i)
		if _, err := c.Get(ctx, keys[i], p, benchLoad); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.Get(ctx, keys[i%len(keys)], p, benchLoad); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkGetRedisHit measures a hit that has to ask Redis (in-process copy past LocalTTL).
func BenchmarkGetRedisHit(b *testing.B) {
	benchHit(b, Options{RedisURL: needEnv(b, "REDIS_TEST_URL"), KeyPrefix: testPrefix(b), LocalTTL: time.Nanosecond}, SourceRedis)
}

// BenchmarkGetRedisOnlyHit is a hit with the in-process tier off (NoLocal, what
// CACHE_LOCAL_MAX_ENTRIES=0 gives the runner): every Get is one Redis GET.
func BenchmarkGetRedisOnlyHit(b *testing.B) {
	benchHit(b, Options{RedisURL: needEnv(b, "REDIS_TEST_URL"), KeyPrefix: testPrefix(b), NoLocal: true}, SourceRedis)
}

// benchHit times Gets of one fresh key on a cache made with o, each of which must come from want.
func benchHit(b *testing.B, o Options, want Source) {
	c := newTestCache(b, o)
	p := Policy{Fresh: time.Hour, Stale: 2 * time.Hour}
	if _, err := c.Get(ctx, "user", p, benchLoad); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r, err := c.Get(ctx, "user", p, benchLoad); err != nil || r.Source != want {
			b.Fatal(r, err)
		}
	}
}
