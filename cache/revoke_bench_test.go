package cache

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
)

// benchRevocations is a store full to its default bound with session revocations.
func benchRevocations(b *testing.B) *Revocations {
	s := newTestRevocations(b, nil, RevocationOptions{})
	until := time.Now().Add(time.Hour)
	for i := range defaultRevEntries {
		if err := s.Revoke(ctx, sessionRev(fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), until)); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkRevokedEmpty is every request while nothing is revoked.
func BenchmarkRevokedEmpty(b *testing.B) {
	s := newTestRevocations(b, nil, RevocationOptions{})
	iat := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s.Revoked(testIssuer, "5f0c1f9e-0000-4000-8000-000000000000", "alice", iat)
	}
}

// BenchmarkRevokedMiss is a request of a live session with 200 000 revocations held.
func BenchmarkRevokedMiss(b *testing.B) {
	s := benchRevocations(b)
	iat := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.Revoked(testIssuer, "5f0c1f9e-0000-4000-8000-000000000000", "alice", iat)
	}
}

// BenchmarkRevokedMissParallel is the same on all CPUs (one RWMutex guards the maps).
func BenchmarkRevokedMissParallel(b *testing.B) {
	s := benchRevocations(b)
	iat := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Revoked(testIssuer, "5f0c1f9e-0000-4000-8000-000000000000", "alice", iat)
		}
	})
}

// BenchmarkRevocationLoad is a start (or a resubscription) with 200 000 live revocations in
// Redis: one op is one full load.
func BenchmarkRevocationLoad(b *testing.B) {
	srv := redistest.Start(b)
	o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(b)}
	c := newTestCache(b, o)
	until := time.Now().Add(time.Hour).UnixMilli()
	for i := 0; i < defaultRevEntries; i += 1000 {
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < i+1000; j++ {
				rec := revRecord{Kind: kindSession, Issuer: testIssuer, ID: fmt.Sprintf("%08d-0000-4000-8000-000000000000", j), Until: until}
				k := c.revKey(rec.hash())
				p.Set(ctx, k, c.seal(k, Entry{Value: rec.encode(), FetchedAt: fetchTime()}), time.Hour)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		s, err := newRevocations(c, RevocationOptions{LoadTimeout: time.Minute}, time.Now)
		if err != nil {
			b.Fatal(err)
		}
		if s.Len() != defaultRevEntries {
			b.Fatalf("loaded %d", s.Len())
		}
		_ = s.Close()
	}
}
