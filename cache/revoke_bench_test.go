package cache

import (
	"fmt"
	"testing"
	"time"
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
