//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// The reliability suite (issue 9): real runner processes, a Redis of its own that it kills,
// freezes and slows, and a proxy in front of the shared real Keycloak (never stopped here: other
// suites use it) that freezes, drops or refuses calls and counts them.

// reliabilityBinary is the runner built without -race: load figures from a race build would
// measure the race detector.
func reliabilityBinary(t *testing.T) string { return shippedBinary(t) }

// Keycloak faults the proxy injects.
const (
	kcPass      int32 = iota
	kcFrozen          // requests are held until the fault ends (a SIGSTOPped process), then forwarded
	kcKilled          // connections are dropped (a crashed process)
	kcStatus500       // Keycloak answers 500
	kcStatus429       // Keycloak (or a proxy before it) answers 429
	kcSlow            // every call is held 1.5 s, then forwarded
)

// loadStartPath is the first admin call of orgsync's load of a user with check_account (the
// default): the account, then its organizations. Counting it counts loads by their start, the
// moment the cache dates a value from; the organizations call that follows comes a variable
// Keycloak latency later.
var loadStartPath = regexp.MustCompile(`/admin/realms/[^/]+/users/([^/]+)$`)

// faultProxy stands between the runners and the real Keycloak: it counts every organizations
// lookup per user, with its time, and injects the faults above.
type faultProxy struct {
	URL       string
	fault     atomic.Int32
	thawed    chan struct{}
	thawMu    sync.Mutex
	mu        sync.Mutex
	lookups   map[string][]time.Time // user id -> times of organizations lookups that reached the proxy
	forwarded []time.Time            // organizations lookups passed on to Keycloak
	refused   atomic.Int64           // calls answered 401 because their token was revoked
	gaps      []time.Duration        // a sample of the gaps counted as extra, for the log
	seen      map[string]bool        // bearer tokens of admin calls so far
	revoked   map[string]bool        // those refused with 401, as Keycloak refuses a revoked token
}

func newFaultProxy(t *testing.T) *faultProxy {
	target, err := url.Parse(kctest.Env(t).URL)
	require.NoError(t, err)
	p := &faultProxy{lookups: map[string][]time.Time{}, thawed: make(chan struct{}), seen: map[string]bool{},
		revoked: map[string]bool{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := loadStartPath.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodGet {
			p.mu.Lock()
			p.lookups[m[1]] = append(p.lookups[m[1]], time.Now())
			p.mu.Unlock()
		}
		if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
			p.mu.Lock()
			p.seen[auth] = true
			revoked := p.revoked[auth]
			p.mu.Unlock()
			if revoked {
				p.refused.Add(1)
				http.Error(w, `{"error":"HTTP 401 Unauthorized"}`, http.StatusUnauthorized)
				return
			}
		}
		switch p.fault.Load() {
		case kcSlow:
			select {
			case <-time.After(1500 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		case kcFrozen:
			p.thawMu.Lock()
			thawed := p.thawed
			p.thawMu.Unlock()
			select {
			case <-thawed:
			case <-r.Context().Done():
				return
			}
		case kcKilled:
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = c.Close()
			}
			return
		case kcStatus500:
			http.Error(w, `{"error":"injected"}`, http.StatusInternalServerError)
			return
		case kcStatus429:
			http.Error(w, `{"error":"injected"}`, http.StatusTooManyRequests)
			return
		}
		if orgLookupPath.MatchString(r.URL.Path) {
			p.mu.Lock()
			p.forwarded = append(p.forwarded, time.Now())
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *faultProxy) set(fault int32) {
	if fault == kcFrozen {
		p.thawMu.Lock()
		p.thawed = make(chan struct{})
		p.thawMu.Unlock()
	}
	if p.fault.Swap(fault) == kcFrozen {
		p.thawMu.Lock()
		close(p.thawed)
		p.thawMu.Unlock()
	}
}

// revokeTokens makes every token the runners have used so far answer 401 from now on: the
// service-account token revoked mid-run, without touching the shared Keycloak's sessions.
func (p *faultProxy) revokeTokens() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for auth := range p.seen {
		p.revoked[auth] = true
	}
	return len(p.revoked)
}

// lookupsSince counts the organizations lookups passed on to Keycloak after t.
func (p *faultProxy) lookupsSince(t time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, at := range p.forwarded {
		if at.After(t) {
			n++
		}
	}
	return n
}

// windowStats says how the loads of users spread over fresh_ttl windows. The proxy sees a load a
// little after the cache dated its value (token, connection, scheduling: up to ~200 ms measured
// under the long form's load), so two loads count as one window apart from 3/4 of fresh_ttl on:
// maxPerWindow is the most loads of one user within any span that short, extra the loads that
// came sooner than that after the previous one of the same user. A duplicate refresh (the
// issue's were 0.2 s apart) falls well inside.
func (p *faultProxy) windowStats(users []*kctest.TestUser, fresh time.Duration, from, to time.Time) (maxPerWindow, extra, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range users {
		var ts []time.Time
		for _, at := range p.lookups[u.ID] {
			if !at.Before(from) && at.Before(to) {
				ts = append(ts, at)
			}
		}
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		total += len(ts)
		span := fresh * 3 / 4
		for i := range ts {
			n := 0
			for j := i; j < len(ts) && ts[j].Sub(ts[i]) < span; j++ {
				n++
			}
			maxPerWindow = max(maxPerWindow, n)
			if i > 0 && ts[i].Sub(ts[i-1]) < span {
				extra++
				if len(p.gaps) < 12 {
					p.gaps = append(p.gaps, ts[i].Sub(ts[i-1]).Round(time.Millisecond))
				}
			}
		}
	}
	return maxPerWindow, extra, total
}

// node is one gateway with its own runner, as each APISIX node starts its runner.
type node struct {
	r       *apisix.Runner
	gw      *apisix.Gateway
	mark    int    // length of the runner's output when the steady phase began
	metrics string // RUNNER_METRICS_ADDR
}

// cacheMetrics sums, over nodes, the cache and Keycloak series that explain extra calls.
func cacheMetrics(nodes []*node) string {
	sums := map[string]float64{}
	var names []string
	for _, nd := range nodes {
		resp, err := http.Get("http://" + nd.metrics + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "apisix_identity_cache_") || strings.HasPrefix(l, "apisix_identity_cache_hits") {
				continue
			}
			name, v, ok := strings.Cut(l, " ")
			f, err := strconv.ParseFloat(v, 64)
			if !ok || err != nil {
				continue
			}
			if _, seen := sums[name]; !seen {
				names = append(names, name)
			}
			sums[name] += f
		}
	}
	var out []string
	for _, n := range names {
		out = append(out, fmt.Sprintf("%s %g", strings.TrimPrefix(n, "apisix_identity_cache_"), sums[n]))
	}
	return strings.Join(out, ", ")
}

func startFleet(t *testing.T, n int, e env) []*node {
	nodes := make([]*node, n)
	for i := range nodes {
		ne := env{}
		for k, v := range e {
			ne[k] = v
		}
		metrics := ne["RUNNER_METRICS_ADDR"]
		if metrics == "" {
			metrics = "127.0.0.1:" + strconv.Itoa(freePort(t))
			ne["RUNNER_METRICS_ADDR"] = metrics
		}
		r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: reliabilityBinary(t), Args: []string{"run"},
			Env: ne.list(), StopTimeout: 10 * time.Second})
		require.NoError(t, err)
		nd := &node{r: r, gw: apisix.NewGateway(r.Socket()), metrics: metrics}
		nodes[i] = nd
		t.Cleanup(func() {
			nd.gw.Close()
			_ = nd.r.Stop()
			out := nd.r.Output()
			if t.Failed() {
				t.Logf("runner %d output (last 4 KB):\n%s", i, tail(out, 4096))
			}
			require.NotContains(t, out, "panic", "the runner must never panic")
			require.NotContains(t, out, kctest.Env(t).SAClientSecret, "a secret leaked into the log")
		})
	}
	return nodes
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// logCount counts the runner's log lines since mark whose message starts with msg.
func (nd *node) logCount(msg string) int {
	out := nd.r.Output()
	return strings.Count(out[min(nd.mark, len(out)):], `"msg":"`+msg)
}

// warnLines are the runner's lines at warn or above since mark.
func (nd *node) warnLines() []string {
	out := nd.r.Output()
	var lines []string
	for _, l := range strings.Split(out[min(nd.mark, len(out)):], "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			lines = append(lines, l)
		}
	}
	return lines
}

// reliabilityEnv is a runner's environment for the suite: the fault proxy as Keycloak, the
// given Redis, the default log level, no watcher unless asked.
func reliabilityEnv(t *testing.T, keycloakURL, redisURL string) env {
	e := baseEnv(t, keycloakURL)
	e["REDIS_URL"] = redisURL
	e["RUNNER_LOG_LEVEL"] = "warn"
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	return e
}

// loadUser is a logged-in user of the real Keycloak.
type loadUser struct {
	user    *kctest.TestUser
	sess    *kctest.Session
	headers http.Header
}

func loginUsers(t *testing.T, n int) []*loadUser {
	if n >= 100 {
		// Password hashing, not the runner, would set the pace of making thousands of users.
		kctest.CheapPasswords(t)
	}
	created := kctest.CreateUsers(t, "rel", n)
	users := make([]*loadUser, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			u := created[i]
			s := kctest.Login(t, u.Username, u.Password)
			h := http.Header{}
			for k, v := range headersOf(s) {
				h.Set(k, v)
			}
			users[i] = &loadUser{user: u, sess: s, headers: h}
		}()
	}
	wg.Wait()
	return users
}

func testUsers(users []*loadUser) []*kctest.TestUser {
	out := make([]*kctest.TestUser, len(users))
	for i, u := range users {
		out[i] = u.user
	}
	return out
}

// loadStats are the figures of one load run.
type loadStats struct {
	sent, failed atomic.Int64
	failedBy     []atomic.Int64 // per node
	wrongUser    atomic.Int64   // answers that carried another user's identity
	maxWait      atomic.Int64   // nanoseconds
	lastNotFresh atomic.Int64   // unix ns of the last answer served stale or from the token
	lastFailure  atomic.Int64   // unix ns
	firstErr     atomic.Pointer[string]
	wg           sync.WaitGroup
}

// wait returns once every worker has stopped (after the load's context ended).
func (s *loadStats) wait() { s.wg.Wait() }

func (s *loadStats) String() string {
	return fmt.Sprintf("sent %d, failed %d, wrong user %d, longest wait %s", s.sent.Load(), s.failed.Load(),
		s.wrongUser.Load(), time.Duration(s.maxWait.Load()).Round(time.Millisecond))
}

// runLoad sends requests with workers concurrent clients until ctx ends; worker w talks to node
// w % len(nodes) (each APISIX node to its own runner), about one request per pause per worker.
func runLoad(ctx context.Context, nodes []*node, route *apisix.Route, users []*loadUser, workers int, pause time.Duration) *loadStats {
	st := &loadStats{failedBy: make([]atomic.Int64, len(nodes))}
	for w := range workers {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 9))
			nd := nodes[w%len(nodes)]
			for ctx.Err() == nil {
				u := users[rnd.IntN(len(users))]
				rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				begin := time.Now()
				res, err := nd.gw.Do(rctx, route, &apisix.Request{Method: http.MethodGet, Path: "/app",
					Header: u.headers.Clone(), SrcIP: "192.0.2.10"})
				cancel()
				wait := time.Since(begin)
				st.sent.Add(1)
				for {
					cur := st.maxWait.Load()
					if int64(wait) <= cur || st.maxWait.CompareAndSwap(cur, int64(wait)) {
						break
					}
				}
				if err != nil || res.Status != http.StatusOK {
					st.failed.Add(1)
					st.failedBy[w%len(nodes)].Add(1)
					st.lastFailure.Store(time.Now().UnixNano())
					msg := fmt.Sprint(err)
					if res != nil {
						msg = fmt.Sprintf("status %d %s %v", res.Status, res.Body, res.Err)
					}
					st.firstErr.CompareAndSwap(nil, &msg)
					// A refused connection fails in microseconds: without a pause the workers of a
					// dead node would spin and starve the machine the other runners share.
					time.Sleep(20 * time.Millisecond)
				} else {
					if res.UpstreamHeader.Get("X-User-Id") != u.user.ID {
						st.wrongUser.Add(1)
					}
					if src := res.UpstreamHeader.Get("X-User-Orgs-Source"); src != "keycloak" && src != "cache" {
						st.lastNotFresh.Store(time.Now().UnixNano())
					}
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	return st
}

// reliabilityRoute is userinfo (no assertion: its signature would dominate the CPU of a small
// machine) and orgsync with the given fresh_ttl, serving stale on Keycloak errors.
func reliabilityRoute(t *testing.T, fresh time.Duration) *apisix.Route {
	return newRoute(
		apisix.PluginConf{Name: "userinfo", Value: fmt.Sprintf(`{"issuer":%q,"audience":%q}`, kctest.Env(t).Issuer, kctest.Env(t).ClientID)},
		orgsyncConf(fmt.Sprintf(`{"fresh_ttl":%q,"stale_ttl":"10m","timeout":"2s"}`, fresh.String())))
}

// figures is one line of docs/reliability.md's table.
type figures struct {
	Scenario        string
	Sent, Failed    int64
	FailedExpected  string
	MaxPerWindow    int
	ExtraCalls      int
	Lookups         int
	LongestWait     time.Duration
	Recovery        time.Duration // -1: not applicable
	RecoveryMeaning string
}

// report logs the figures and, when RELIABILITY_REPORT names a file, appends them to it as a
// markdown table row (make reliability collects them there).
func report(t *testing.T, f figures) {
	rec := "n/a"
	if f.Recovery >= 0 {
		rec = f.Recovery.Round(10*time.Millisecond).String() + " (" + f.RecoveryMeaning + ")"
	}
	row := fmt.Sprintf("| %s | %d | %d (%s) | %d | %d of %d | %s | %s |", f.Scenario, f.Sent, f.Failed,
		f.FailedExpected, f.MaxPerWindow, f.ExtraCalls, f.Lookups, f.LongestWait.Round(time.Millisecond), rec)
	t.Log(row)
	if path := os.Getenv("RELIABILITY_REPORT"); path != "" {
		fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		require.NoError(t, err)
		_, _ = fmt.Fprintln(fh, row)
		_ = fh.Close()
	}
}
