//go:build integration

package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// TestReliabilitySoak is the long form (make reliability): SOAK_USERS users of the real realm
// (default 10 000), SOAK_DURATION (default 10m) of load on 3 runners sharing Redis, memberships
// changing underneath. Every answer must carry its own token's user, and an organization list
// that reflects every change older than fresh_ttl (stale_ttl = fresh_ttl here, so no list is
// served past it unless marked stale because Keycloak did not answer in time); resident memory
// and goroutines must be flat at the end. It runs only when
// RELIABILITY_SOAK is set: it creates that many users in the Keycloak it is given.
func TestReliabilitySoak(t *testing.T) {
	if os.Getenv("RELIABILITY_SOAK") == "" {
		t.Skip("long form: set RELIABILITY_SOAK=1 (make reliability does)")
	}
	nUsers := envInt(t, "SOAK_USERS", 10000)
	duration := envDuration(t, "SOAK_DURATION", 10*time.Minute)
	// Every user is asked for about once a second, so each window costs Keycloak a refresh of
	// every user: 5 ms of fresh_ttl per user keeps that near 200 refreshes a second (50 s for
	// 10 000 users), what the test Keycloak serves beside the load on the project's 2 cores.
	fresh := envDuration(t, "SOAK_FRESH_TTL", max(5*time.Second, time.Duration(nUsers)*5*time.Millisecond))
	// The users are logged in before the load, up to a quarter of an hour for 10 000: their
	// tokens must outlive the setup and the run. Sessions are still refreshed during the load.
	kctest.AccessTokenLifespan(t, duration+time.Hour)
	begin := time.Now()
	users := loginUsers(t, nUsers)
	t.Logf("%d users created and logged in in %s; fresh_ttl %s", nUsers, time.Since(begin).Round(time.Second), fresh)

	redis := redistest.Start(t)
	kc := newFaultProxy(t)
	e := reliabilityEnv(t, kc.URL, "redis://"+redis.Addr()+"/0")
	var metricsAddrs []string
	nodes := make([]*node, 0, 3)
	for range 3 {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		e["RUNNER_METRICS_ADDR"] = addr
		metricsAddrs = append(metricsAddrs, addr)
		nodes = append(nodes, startFleet(t, 1, e)...)
	}
	route := newRoute(
		apisix.PluginConf{Name: "userinfo", Value: fmt.Sprintf(`{"issuer":%q,"audience":%q}`, kctest.Env(t).Issuer, kctest.Env(t).ClientID)},
		orgsyncConf(fmt.Sprintf(`{"fresh_ttl":%q,"stale_ttl":%q,"timeout":"3s"}`, fresh, fresh)))

	// Memberships change underneath: every 2 s one user joins or leaves acme. want[i] is what
	// user i's list must show once its change is older than fresh_ttl (plus 1 s for the request).
	type state struct {
		mu      sync.Mutex
		inAcme  bool
		changed time.Time
	}
	states := make([]state, len(users))
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var changes atomic.Int64
	go func() {
		rnd := rand.New(rand.NewPCG(5, 6))
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			i := rnd.IntN(len(users))
			st := &states[i]
			st.mu.Lock()
			if st.inAcme {
				kctest.RemoveMember(t, "acme", users[i].user.ID)
			} else {
				kctest.AddMember(t, "acme", users[i].user.ID)
			}
			st.inAcme, st.changed = !st.inAcme, time.Now()
			st.mu.Unlock()
			changes.Add(1)
		}
	}()
	// Sessions are refreshed during the load (refresh token grant, new access token of the same
	// user) as lua-resty-openidc does, one user after another, two at a time, so that requests
	// carry tokens issued under load too.
	var sessMu sync.RWMutex
	var refreshed atomic.Int64
	for r := range 2 {
		go func() {
			for i := r; ctx.Err() == nil; i = (i + 2) % len(users) {
				u := users[i]
				u.sess.Refresh(t)
				sessMu.Lock()
				u.headers.Set("x-access-token", u.sess.AccessToken)
				sessMu.Unlock()
				refreshed.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}

	var sent, failed, wrongUser, outdated, marked atomic.Int64
	var firstBad, firstOutdated atomic.Pointer[string]
	var wg sync.WaitGroup
	rssAt := func() []int64 {
		out := make([]int64, len(nodes))
		for i, nd := range nodes {
			out[i] = rssKB(nd.r.Pid())
		}
		return out
	}
	for w := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 11))
			nd := nodes[w%len(nodes)]
			for ctx.Err() == nil {
				i := rnd.IntN(len(users))
				u := users[i]
				sessMu.RLock()
				h := u.headers.Clone()
				sessMu.RUnlock()
				st := &states[i]
				st.mu.Lock()
				inAcme, changed := st.inAcme, st.changed
				st.mu.Unlock()
				rctx, c := context.WithTimeout(context.Background(), 10*time.Second)
				asked := time.Now()
				res, err := nd.gw.Do(rctx, route, &apisix.Request{Method: http.MethodGet, Path: "/app", Header: h})
				c()
				sent.Add(1)
				bad := func(what string) {
					msg := fmt.Sprintf("user %s: %s", u.user.ID, what)
					firstBad.CompareAndSwap(nil, &msg)
				}
				switch {
				case err != nil || res.Status != 200:
					failed.Add(1)
					bad(fmt.Sprintf("failed: %v %v", err, res))
				case res.UpstreamHeader.Get("X-User-Id") != u.user.ID:
					wrongUser.Add(1)
					bad("another user's identity: " + res.UpstreamHeader.Get("X-User-Id"))
				case res.UpstreamHeader.Get("X-User-Orgs-Source") == "stale" || res.UpstreamHeader.Get("X-User-Orgs-Source") == "token":
					// Keycloak did not answer in time: the list is marked as not current.
					marked.Add(1)
				case !changed.IsZero() && asked.Sub(changed) > fresh+100*time.Millisecond &&
					strings.Contains(res.UpstreamHeader.Get("X-User-Orgs"), "acme") != inAcme:
					outdated.Add(1)
					msg := fmt.Sprintf("user %s: orgs %q (source %s), in acme %v since %s", u.user.ID,
						res.UpstreamHeader.Get("X-User-Orgs"), res.UpstreamHeader.Get("X-User-Orgs-Source"), inAcme,
						asked.Sub(changed).Round(time.Millisecond))
					firstOutdated.CompareAndSwap(nil, &msg)
				}
			}
		}()
	}
	var rssEarly []int64
	var gorEarly []int
	select {
	case <-ctx.Done():
	case <-time.After(duration / 4):
		rssEarly = rssAt()
		for _, a := range metricsAddrs {
			gorEarly = append(gorEarly, goroutines(t, a))
		}
	}
	<-ctx.Done()
	wg.Wait()
	rssEnd := rssAt()
	var gorEnd []int
	for _, a := range metricsAddrs {
		gorEnd = append(gorEnd, goroutines(t, a))
	}
	maxW, extra, total := kc.windowStats(testUsers(users), fresh, begin, time.Now())
	if p := firstBad.Load(); p != nil {
		t.Logf("first bad answer: %s", *p)
	}
	if p := firstOutdated.Load(); p != nil {
		t.Logf("first outdated list: %s", *p)
	}
	t.Logf("soak: %d users, %s, fresh_ttl %s, sent %d (%.0f/s), failed %d, wrong user %d, outdated lists %d, marked stale %d, changes %d, sessions refreshed %d",
		nUsers, duration, fresh, sent.Load(), float64(sent.Load())/duration.Seconds(), failed.Load(), wrongUser.Load(),
		outdated.Load(), marked.Load(), changes.Load(), refreshed.Load())
	t.Logf("soak: organizations lookups %d, max per user per fresh_ttl window %d, closer than fresh_ttl %d",
		total, maxW, extra)
	t.Logf("soak: RSS kB at 1/4 %v, at end %v; goroutines at 1/4 %v, at end %v", rssEarly, rssEnd, gorEarly, gorEnd)
	report(t, figures{Scenario: fmt.Sprintf("soak: %d users, %s, memberships changing", nUsers, duration),
		Sent: sent.Load(), Failed: failed.Load(), FailedExpected: "0", MaxPerWindow: maxW, ExtraCalls: extra,
		Lookups: total, Recovery: -1})
	assert.Zero(t, failed.Load())
	assert.Zero(t, wrongUser.Load(), "every answer carries its own token's user")
	assert.Zero(t, outdated.Load(), "every list reflects changes older than fresh_ttl")
	require.Len(t, rssEarly, len(nodes), "the run lasted past its first quarter")
	for i := range nodes {
		assert.LessOrEqual(t, rssEnd[i], rssEarly[i]*3/2+20000, "runner %d: resident memory flat", i)
		assert.LessOrEqual(t, gorEnd[i], gorEarly[i]+20, "runner %d: goroutines flat", i)
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, name)
	return d
}

var vmRSS = regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`)

// rssKB is the resident memory of a process, from /proc.
func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	m := vmRSS.FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

var goGoroutines = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)

func goroutines(t *testing.T, addr string) int {
	m := goGoroutines.FindStringSubmatch(httpGet(t, "http://"+addr+"/metrics"))
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
