package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
)

// revocationsHeld is how many revocations of other sessions the revocation
// variant's runner holds: half the store's default bound, what a realm of
// many users ending sessions over a day (the default 10 h lifetime) leaves.
// The quick run holds revocationsQuick (seeding 100 000 takes ~10 s).
const (
	revocationsHeld  = 100000
	revocationsQuick = 1000
)

// revokedSubjectsEvery makes one revocation in that many subject-wide, so
// that a request looks up its subject as well as its session (with none the
// store skips the subject lookup).
const revokedSubjectsEvery = 100

// seedRevocations starts a Redis of its own (a revocation published on the
// shared one would reach the other runners, whose chains are the comparison)
// and fills it through the cache package's API with the fleet's value secret,
// as a runner's back-channel route would: the runner started on it loads them
// before its first request. It returns the runner's Redis; the caller stops it.
func (e *env) seedRevocations(ctx context.Context, n int) (*redisServer, error) {
	dir := filepath.Join(e.dir, "revocations")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rs, err := startRedis(dir)
	if err != nil {
		return nil, err
	}
	c, err := cache.New(ctx, &cache.Options{RedisURL: rs.url, ValueSecret: []byte(redisValueSecret)})
	if err != nil {
		rs.stop()
		return nil, err
	}
	defer c.Close()
	rev, err := cache.NewRevocations(c, cache.RevocationOptions{MaxEntries: n + 1})
	if err != nil {
		rs.stop()
		return nil, err
	}
	defer rev.Close()
	t := time.Now()
	until := t.Add(10 * time.Hour)
	var mu sync.Mutex
	var first error
	err = parallel(32, n, func(i int) error {
		r := cache.Revocation{Issuer: e.kc.Issuer, SessionID: fmt.Sprintf("bench-sid-%08d-%s", i, randomHex(8)),
			Subject: fmt.Sprintf("bench-sub-%08d", i), At: t, Until: until}
		if i%revokedSubjectsEvery == 0 {
			r.SessionID = ""
		}
		if err := rev.Revoke(ctx, r); err != nil {
			mu.Lock()
			first = errors.Join(first, err)
			mu.Unlock()
			return err
		}
		return nil
	})
	if err != nil {
		rs.stop()
		return nil, fmt.Errorf("seeding %d revocations: %w", n, first)
	}
	logf("seeded %d revocations (%d subject-wide) in %s", n, n/revokedSubjectsEvery, time.Since(t).Round(time.Millisecond))
	return rs, nil
}

// revocationCost reports the hit path with revocations held against the same
// chain on a runner holding none, round by round (both ran in every round,
// interleaved with the other variants). The two chains run in two processes:
// their no-op chains, which make no check, show what differs between the
// processes themselves, and the normalized columns divide it out.
func (r *report) revocationCost(with, without *variant, res map[string]map[int][]sample, held float64) {
	r.printf("### The revocation check on the hit path\n\n")
	r.printf("%q against %q, run in the same rounds: the first runner loaded %.0f revocations of other sessions "+
		"(1 in %d subject-wide, so each request looks up its session and its subject) from its Redis at start; the "+
		"second holds none. Ratios of the first runner to the second, per round: median (min-max). \"no-op\" compares "+
		"the two runners' no-op chains (no check at all: the difference between the two processes); \"normalized\" "+
		"is the chain's ratio divided by the no-op's.\n\n",
		with.name, without.name, held, revokedSubjectsEvery)
	r.printf("| conns | p50 | calls/s | runner CPU/call | no-op p50 | no-op calls/s | no-op CPU/call | normalized p50 | normalized calls/s | normalized CPU/call |\n")
	r.printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, conns := range connCounts {
		cols := make([][]float64, 9)
		a, b := res[with.key()][conns], res[without.key()][conns]
		na, nb := res[with.noop.key()][conns], res[without.noop.key()][conns]
		for i := range min(len(a), len(b), len(na), len(nb)) {
			ratios := func(x, y sample) [3]float64 {
				return [3]float64{float64(x.m.pct(0.5)) / float64(y.m.pct(0.5)), x.m.throughput() / y.m.throughput(),
					float64(x.m.cpuPerCall()) / float64(y.m.cpuPerCall())}
			}
			chain, noop := ratios(a[i], b[i]), ratios(na[i], nb[i])
			for j := range 3 {
				cols[j] = append(cols[j], chain[j])
				cols[3+j] = append(cols[3+j], noop[j])
				cols[6+j] = append(cols[6+j], chain[j]/noop[j])
			}
		}
		r.printf("| %d |", conns)
		for _, c := range cols {
			r.printf(" %s |", spread(c, "%.3f"))
		}
		r.printf("\n")
	}
	r.printf("\nTarget (issue 16): the hit path with the revocation check costs no more than 3 %% over the chain without.\n\n")
}
