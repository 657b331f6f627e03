//go:build integration

package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// suiteScale is the short form (CI) unless RELIABILITY_LONG is set (make reliability).
type suiteScale struct {
	users         int
	workers       int
	warm, steady  time.Duration
	fault         time.Duration
	fresh         time.Duration
	requestPause  time.Duration
	nodes         int
	recoveryBound time.Duration
}

func scale() suiteScale {
	s := suiteScale{users: 12, workers: 12, warm: 2 * time.Second, steady: 5 * time.Second,
		fault: 2500 * time.Millisecond, fresh: 2 * time.Second, requestPause: 2 * time.Millisecond, nodes: 3,
		recoveryBound: 20 * time.Second}
	if os.Getenv("RELIABILITY_LONG") != "" {
		s.users, s.workers, s.steady, s.fault, s.requestPause = 100, 48, 40*time.Second, 8*time.Second, 0
	}
	return s
}

// setup is one scenario's world: its own Redis behind a proxy that can slow it, the fault proxy
// in front of the real Keycloak, and a fleet of runners.
type setup struct {
	t     *testing.T
	sc    suiteScale
	redis *redistest.Server
	slow  *redistest.SlowProxy
	kc    *faultProxy
	nodes []*node
	route *apisix.Route
	users []*loadUser
}

func newSetup(t *testing.T, sc suiteScale, users []*loadUser, extraEnv env) *setup {
	s := &setup{t: t, sc: sc, users: users}
	s.redis = redistest.Start(t)
	s.slow = redistest.StartSlowProxy(t, s.redis.Addr())
	s.kc = newFaultProxy(t)
	e := reliabilityEnv(t, s.kc.URL, s.slow.URL())
	for k, v := range extraEnv {
		e[k] = v
	}
	s.nodes = startFleet(t, sc.nodes, e)
	s.route = reliabilityRoute(t, sc.fresh)
	return s
}

// phases runs the load: warm, then inject (if any) for sc.fault, heal, then until recovered
// holds (polled every 50 ms, at most sc.recoveryBound), then one more second. It returns the
// load's figures and the time from heal to recovered (-1 without a fault).
func (s *setup) phases(inject, heal func(), recovered func(st *loadStats) bool) (*loadStats, time.Duration, time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	begin := time.Now()
	st := runLoad(ctx, s.nodes, s.route, s.users, s.sc.workers, s.sc.requestPause)
	time.Sleep(s.sc.warm)
	for _, nd := range s.nodes {
		nd.mark = len(nd.r.Output())
	}
	recovery := time.Duration(-1)
	if inject == nil {
		time.Sleep(s.sc.steady)
	} else {
		inject()
		time.Sleep(s.sc.fault)
		heal()
		healed := time.Now()
		for !recovered(st) {
			if time.Since(healed) > s.sc.recoveryBound {
				s.t.Errorf("not recovered within %s after the fault ended", s.sc.recoveryBound)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		recovery = time.Since(healed)
		time.Sleep(time.Second)
	}
	cancel()
	st.wait()
	if p := st.firstErr.Load(); p != nil {
		s.t.Logf("first failure: %s", *p)
	}
	return st, recovery, begin
}

func (s *setup) figures(name string, st *loadStats, recovery time.Duration, meaning, failedExpected string, begin time.Time) figures {
	maxW, extra, total := s.kc.windowStats(testUsers(s.users), s.sc.fresh, begin, time.Now())
	s.t.Logf("%s: cache metrics of the fleet: %s; sample of gaps under fresh_ttl: %v", name, cacheMetrics(s.nodes), s.kc.gaps)
	return figures{Scenario: name, Sent: st.sent.Load(), Failed: st.failed.Load(), FailedExpected: failedExpected,
		MaxPerWindow: maxW, ExtraCalls: extra, Lookups: total, LongestWait: time.Duration(st.maxWait.Load()),
		Recovery: recovery, RecoveryMeaning: meaning}
}

// balanced reports whether every node logged as many recoveries as outages, and how many
// outages were logged in all.
func (s *setup) balanced(down, up string) (bool, int) {
	all := 0
	for _, nd := range s.nodes {
		d, u := nd.logCount(down), nd.logCount(up)
		all += d
		if d != u {
			return false, all
		}
	}
	return true, all
}

// TestReliability is the standing fault suite of docs/reliability.md. Each subtest reports one row.
func TestReliability(t *testing.T) {
	sc := scale()
	users := loginUsers(t, sc.users)

	t.Run("steady fleet", func(t *testing.T) {
		s := newSetup(t, sc, users, nil)
		st, _, begin := s.phases(nil, nil, nil)
		f := s.figures("steady, 3 runners sharing Redis", st, -1, "", "0", begin)
		report(t, f)
		assert.Zero(t, st.failed.Load(), st.String())
		assert.Zero(t, st.wrongUser.Load())
		assert.Zero(t, f.ExtraCalls, "organizations calls closer than fresh_ttl for one user")
		assert.LessOrEqual(t, f.MaxPerWindow, 1)
		for i, nd := range s.nodes {
			assert.Empty(t, nd.warnLines(), "runner %d: a healthy fleet logs nothing at warn", i)
		}
	})

	t.Run("redis slow", func(t *testing.T) {
		s := newSetup(t, sc, users, nil)
		var mu sync.Mutex
		rnd := rand.New(rand.NewPCG(3, 4))
		st, _, begin := s.phases(func() {
			// Most replies take up to 30 ms; one in 20 takes 700 ms, past the 500 ms op timeout.
			s.slow.SetDelay(func() time.Duration {
				mu.Lock()
				defer mu.Unlock()
				if rnd.IntN(20) == 0 {
					return 700 * time.Millisecond
				}
				return time.Duration(rnd.IntN(30)) * time.Millisecond
			})
		}, func() { s.slow.SetDelay(func() time.Duration { return 0 }) }, func(*loadStats) bool { return true })
		f := s.figures("Redis slowed (1 reply in 20 past the op timeout)", st, -1, "", "0", begin)
		report(t, f)
		assert.Zero(t, st.failed.Load(), st.String())
		assert.Zero(t, st.wrongUser.Load())
		for i, nd := range s.nodes {
			assert.Zero(t, nd.logCount("redis unavailable"), "runner %d: a slow Redis is not down", i)
			assert.Empty(t, nd.warnLines(), "runner %d: no warning storm", i)
		}
		// Every late reply comes within twice the op timeout, and a timed-out fill-path command
		// is sent once more with that patience: no load beside another runner's.
		assert.Zero(t, f.ExtraCalls, "extra Keycloak calls with a slow Redis (of %d)", f.Lookups)
		assert.LessOrEqual(t, f.MaxPerWindow, 1, "loads of one user in a window with a slow Redis")
	})

	redisFault := func(name string, inject, heal func(s *setup)) {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t, sc, users, nil)
			st, rec, begin := s.phases(func() { inject(s) }, func() { heal(s) }, func(*loadStats) bool {
				ok, n := s.balanced("redis unavailable", "redis recovered")
				return ok && n > 0
			})
			report(t, s.figures(name, st, rec, "every runner logged redis recovered", "0", begin))
			assert.Zero(t, st.failed.Load(), st.String())
			assert.Zero(t, st.wrongUser.Load())
			for i, nd := range s.nodes {
				assert.LessOrEqual(t, nd.logCount("redis unavailable"), 1, "runner %d: the outage logged once", i)
			}
		})
	}
	redisFault("Redis killed, restarted", func(s *setup) { s.redis.Kill() }, func(s *setup) { s.redis.Start() })
	redisFault("Redis frozen (SIGSTOP)", func(s *setup) { s.redis.Signal(syscall.SIGSTOP) },
		func(s *setup) { s.redis.Signal(syscall.SIGCONT) })

	keycloakFault := func(name string, fault int32) {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t, sc, users, nil)
			if fault == kcFrozen {
				// Longer than the runner's Keycloak timeout (3 s), so that calls time out.
				s.sc.fault = max(s.sc.fault, 5*time.Second)
			}
			var healed time.Time
			st, rec, begin := s.phases(func() { s.kc.set(fault) }, func() { healed = time.Now(); s.kc.set(kcPass) },
				func(*loadStats) bool {
					ok, _ := s.balanced("keycloak unreachable", "keycloak reachable again")
					return ok && s.kc.lookupsSince(healed) > 0
				})
			report(t, s.figures(name, st, rec, "breaker closed on every runner, lookups reach Keycloak", "0", begin))
			assert.Zero(t, st.failed.Load(), "cached users are served stale: %s", st)
			assert.Zero(t, st.wrongUser.Load())
			for i, nd := range s.nodes {
				assert.LessOrEqual(t, nd.logCount("keycloak unreachable"), 2, "runner %d: no warning storm", i)
			}
		})
	}
	keycloakFault("Keycloak frozen (proxy holds calls)", kcFrozen)
	keycloakFault("Keycloak killed (proxy drops connections)", kcKilled)
	keycloakFault("Keycloak answering 500", kcStatus500)
	keycloakFault("Keycloak answering 429", kcStatus429)

	keycloakFault("Keycloak slowed (1.5 s per call)", kcSlow)

	t.Run("service-account token revoked", func(t *testing.T) {
		s := newSetup(t, sc, users, nil)
		s.sc.fault = 0 // revocation is a moment, not a period
		var revokedAt time.Time
		st, rec, begin := s.phases(func() {
			require.Positive(t, s.kc.revokeTokens(), "the runners used a token")
			revokedAt = time.Now()
		}, func() {}, func(*loadStats) bool { return s.kc.lookupsSince(revokedAt) > 0 })
		report(t, s.figures("service-account token revoked mid-run", st, rec, "a lookup answered with a new token",
			"0", begin))
		assert.Positive(t, s.kc.refused.Load(), "the revoked token was used and refused")
		assert.Zero(t, st.failed.Load(), st.String())
		assert.Zero(t, st.wrongUser.Load())
		for i, nd := range s.nodes {
			assert.Zero(t, nd.logCount("keycloak unreachable"), "runner %d: a revoked token is renewed, not an outage", i)
		}
	})

	t.Run("runner killed and restarted", func(t *testing.T) {
		s := newSetup(t, sc, users, nil)
		s.sc.fault = 3 * time.Second // APISIX respawns an exited runner about 3 s later
		victim := s.nodes[0]
		var restarted time.Time
		st, rec, begin := s.phases(func() {
			require.NoError(t, syscall.Kill(victim.r.Pid(), syscall.SIGKILL))
		}, func() {
			require.NoError(t, victim.r.Restart())
			restarted = time.Now()
		}, func(*loadStats) bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := victim.gw.Do(ctx, s.route, &apisix.Request{Path: "/app", Header: users[0].headers.Clone()})
			return err == nil && res.Status == 200 && !restarted.IsZero()
		})
		others := int64(0)
		for i := 1; i < len(s.nodes); i++ {
			others += st.failedBy[i].Load()
		}
		report(t, s.figures(fmt.Sprintf("runner SIGKILLed, restarted %s later", s.sc.fault), st, rec, "first answer of the new process",
			"only on its node while it was down", begin))
		assert.Zero(t, others, "the other runners failed nothing")
		assert.Zero(t, st.wrongUser.Load())
	})
}

// TestReliabilityWatcherHandover stops (SIGTERM) the runner holding the admin-event watcher's
// lease while it is under load: another runner must take over within about one poll interval,
// and a membership change made right after must reach requests. In the second case Keycloak
// hangs when the holder is told to stop, so its poll is waiting on Keycloak: the poll used to
// run to its end (up to the interval + 5 s) before the lease was released, which is how a
// hand-over took 6-7 s under CPU contention.
func TestReliabilityWatcherHandover(t *testing.T) {
	for _, hang := range []bool{false, true} {
		name := "Keycloak answering"
		if hang {
			name = "Keycloak hanging during the holder's poll"
		}
		t.Run(name, func(t *testing.T) { watcherHandover(t, name, hang) })
	}
}

func watcherHandover(t *testing.T, name string, hang bool) {
	sc := scale()
	sc.nodes = 2
	users := loginUsers(t, 4)
	s := newSetup(t, sc, users, env{"KEYCLOAK_EVENTS_INTERVAL": "1s", "RUNNER_LOG_LEVEL": "info"})
	var holder, other *node
	eventually(t, 15*time.Second, "one runner takes the lease", func() bool {
		for i, nd := range s.nodes {
			if strings.Contains(nd.r.Output(), "admin event watcher lease taken") {
				holder, other = nd, s.nodes[1-i]
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithCancel(context.Background())
	st := runLoad(ctx, s.nodes, s.route, users, sc.workers, sc.requestPause)
	time.Sleep(2 * time.Second)
	other.mark = len(other.r.Output())
	if hang {
		s.kc.set(kcFrozen)
		time.Sleep(1050 * time.Millisecond) // the holder's next poll is now waiting on Keycloak
	}

	stopped := make(chan error, 1)
	go func() { stopped <- holder.r.Stop() }()
	handover := eventually(t, 15*time.Second, "the other runner takes the lease", func() bool {
		return other.logCount("admin event watcher lease taken") > 0
	})
	s.kc.set(kcPass)
	// A change made now reaches requests through the new holder's poll.
	u := users[1]
	kctest.AddMember(t, "acme", u.user.ID)
	propagation := eventually(t, 15*time.Second, "the membership change reaches requests", func() bool {
		res, err := other.gw.Do(context.Background(), s.route, &apisix.Request{Path: "/app", Header: u.headers.Clone()})
		return err == nil && res.Status == 200 && strings.Contains(res.UpstreamHeader.Get("X-User-Orgs"), "acme")
	})
	cancel()
	st.wait()
	require.NoError(t, <-stopped)
	t.Logf("hand-over %s; change seen %s after it was made", handover.Round(10*time.Millisecond),
		propagation.Round(10*time.Millisecond))
	report(t, figures{Scenario: "SIGTERM of the watcher's holder under load, " + name, Sent: st.sent.Load(),
		Failed: st.failedBy[indexOf(s.nodes, other)].Load(), FailedExpected: "0 on the other runner",
		LongestWait: time.Duration(st.maxWait.Load()), Recovery: handover,
		RecoveryMeaning: "lease taken by the other runner; change seen " + propagation.Round(10*time.Millisecond).String() + " after it was made"})
	assert.Zero(t, st.failedBy[indexOf(s.nodes, other)].Load(), "the other runner failed nothing")
	// The lease is released at once, a poll under way cancelled; the other runner tries to take
	// it every second.
	assert.Less(t, handover, 2*time.Second, "hand-over bounded by one poll interval")
}

func indexOf(nodes []*node, nd *node) int {
	for i, n := range nodes {
		if n == nd {
			return i
		}
	}
	return -1
}

// TestReliabilityWatcherLogsAfterRedisRestart: a Redis restart makes the watcher's poll fail and
// its lease vanish. At the default level every degraded state logged must have its end logged
// too (issue 9: "admin event poll failing" used to stand forever once the lease was lost).
func TestReliabilityWatcherLogsAfterRedisRestart(t *testing.T) {
	sc := scale()
	sc.nodes = 1
	users := loginUsers(t, 2)
	s := newSetup(t, sc, users, env{"KEYCLOAK_EVENTS_INTERVAL": "1s"})
	nd := s.nodes[0]
	time.Sleep(2 * time.Second) // the watcher holds the lease and polls
	nd.mark = len(nd.r.Output())
	ctx, cancel := context.WithCancel(context.Background())
	st := runLoad(ctx, s.nodes, s.route, users, 4, 10*time.Millisecond)
	s.redis.Kill()
	eventually(t, 10*time.Second, "the poll failure is reported", func() bool {
		return nd.logCount("admin event poll failing") > 0
	})
	s.redis.Start()
	pairs := [][2][]string{
		{{"redis unavailable"}, {"redis recovered"}},
		{{"redis invalidation subscription lost"}, {"redis invalidation subscription restored"}},
		{{"admin event poll failing"}, {"admin event poll recovered", "admin event watcher lease lost; its failing poll stops here"}},
		{{"admin event watcher lease lost"}, {"admin event watcher lease taken again", "admin event watcher lease held by another runner"}},
	}
	count := func(msgs []string) int {
		n := 0
		for _, m := range msgs {
			n += nd.logCount(m)
		}
		return n
	}
	ended := func() bool {
		for _, p := range pairs {
			if count(p[0]) != count(p[1]) {
				return false
			}
		}
		return true
	}
	rec := eventually(t, 20*time.Second, "every degraded state logged has its end logged", ended)
	time.Sleep(2 * time.Second)
	cancel()
	st.wait()
	require.True(t, ended(), "still balanced 2 s later:\n%s", strings.Join(nd.warnLines(), "\n"))
	known := []string{"redis unavailable", "redis recovered", "redis invalidation subscription", "admin event poll",
		"admin event watcher lease", "revocations: loading from redis"}
	for _, l := range nd.warnLines() {
		ok := false
		for _, k := range known {
			ok = ok || strings.Contains(l, `"msg":"`+k)
		}
		assert.True(t, ok, "unexpected warning: %s", l)
	}
	assert.Zero(t, st.failed.Load(), st.String())
	t.Logf("all degraded states ended %s after Redis restarted; warn lines:\n%s", rec.Round(10*time.Millisecond),
		strings.Join(nd.warnLines(), "\n"))
}
