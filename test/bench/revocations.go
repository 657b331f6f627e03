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
const revocationsHeld = 100000

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
// interleaved with the other variants).
func (r *report) revocationCost(with, without *variant, res map[string]map[int][]sample, held float64) {
	r.printf("### The revocation check on the hit path\n\n")
	r.printf("%q against %q, run in the same rounds: the first runner loaded %.0f revocations of other sessions "+
		"(1 in %d subject-wide, so each request looks up its session and its subject) from its Redis at start; the "+
		"second holds none. Ratio of the first to the second per round: median (min-max). Also each chain against the "+
		"no-op chain of its own runner (which removes the difference between the two processes).\n\n",
		with.name, without.name, held, revokedSubjectsEvery)
	r.printf("| conns | p50 with / without | calls/s with / without | runner CPU/call with / without | p50 vs own no-op, with | p50 vs own no-op, without |\n")
	r.printf("|---:|---:|---:|---:|---:|---:|\n")
	for _, conns := range connCounts {
		var p50, tput, cpu, rw, ro []float64
		a, b := res[with.name][conns], res[without.name][conns]
		for i := range min(len(a), len(b)) {
			p50 = append(p50, float64(a[i].m.pct(0.5))/float64(b[i].m.pct(0.5)))
			tput = append(tput, a[i].m.throughput()/b[i].m.throughput())
			cpu = append(cpu, float64(a[i].m.cpuPerCall())/float64(b[i].m.cpuPerCall()))
			rw = append(rw, a[i].ratioP50)
			ro = append(ro, b[i].ratioP50)
		}
		r.printf("| %d | %s | %s | %s | %s | %s |\n", conns, spread(p50, "%.3f"), spread(tput, "%.3f"),
			spread(cpu, "%.3f"), spread(rw, "%.3f"), spread(ro, "%.3f"))
	}
	r.printf("\nTarget (issue 16): the hit path with the revocation check costs no more than 3 %% over the chain without.\n\n")
}
