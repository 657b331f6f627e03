//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

func TestMetricsAndHealth(t *testing.T) {
	addr := "127.0.0.1:" + itoa(freePort(t))
	e := baseEnv(t, kctest.Env(t).URL)
	e["RUNNER_METRICS_ADDR"] = addr
	r := startRunner(t, e)
	user := kctest.CreateUser(t, "metrics")
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{}`))
	require.Equal(t, 200, r.do(t, route, headersOf(sess)).Status)
	require.Equal(t, 401, r.do(t, route, map[string]string{"x-userinfo": "%%"}).Status)

	body := httpGet(t, "http://"+addr+"/metrics")
	for _, series := range []string{
		`apisix_identity_userinfo_requests_total{outcome="verified"}`,
		`apisix_identity_userinfo_verification_failures_total{reason="access_token_missing"}`,
		`apisix_identity_userinfo_assertions_signed_total`,
		`apisix_identity_orgsync_requests_total{outcome="keycloak"}`,
		`apisix_identity_cache_`,
		`apisix_identity_keycloak_requests_total{endpoint=`,
		`apisix_identity_orgsync_event_watcher_polls_total`,
		// main builds the revocation store with the cache
		`apisix_identity_cache_revocations_entries`,
		`apisix_identity_cache_revocations_stored_total{result="shared"}`,
		// With REDIS_URL, and every poll result from the start (the alerts read ok at 0).
		`apisix_identity_cache_redis_up 1`,
		`apisix_identity_orgsync_event_watcher_polls_total{result="ok"}`,
		`apisix_identity_orgsync_event_watcher_polls_total{result="error"} 0`,
		`apisix_identity_build_info{goversion="go`,
	} {
		assert.Contains(t, body, series)
	}
	assert.Contains(t, httpGet(t, "http://"+addr+"/healthz"), `"status":"ok"`)
}

// A runner without REDIS_URL has no Redis to be down: it exports no redis_up, which the
// IdentityRunnerRedisDown alert would read as down (issue 19).
func TestMetricsWithoutRedis(t *testing.T) {
	addr := "127.0.0.1:" + itoa(freePort(t))
	e := baseEnv(t, kctest.Env(t).URL)
	delete(e, "REDIS_URL")
	delete(e, "REDIS_VALUE_SECRET")
	e["RUNNER_METRICS_ADDR"] = addr
	startRunner(t, e)
	body := httpGet(t, "http://"+addr+"/metrics")
	assert.NotContains(t, body, "apisix_identity_cache_redis_up")
	assert.Contains(t, body, `apisix_identity_cache_revocations_stored_total{result="local"}`)
	assert.Contains(t, body, "apisix_identity_build_info{")
}

func TestSIGTERMReleasesTheWatcherLease(t *testing.T) {
	e := baseEnv(t, kctest.Env(t).URL)
	// A Redis of its own: runners of other test runs on the shared one take the lease and write
	// the position too.
	e["REDIS_URL"] = redistest.Start(t).URL()
	opts, err := redis.ParseURL(e["REDIS_URL"])
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	const lease = "apisix-identity:lease:orgsync:events:lease"
	ctx := context.Background()

	r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: runnerBinary, Args: []string{"run"}, Env: e.list(),
		StopTimeout: 10 * time.Second})
	require.NoError(t, err)
	// Runners stopped earlier released the lease; one that was killed leaves it
	// to expire (10 s), so allow for that.
	eventually(t, 15*time.Second, "this runner takes the watcher lease", func() bool {
		return strings.Contains(r.Output(), "admin event watcher lease taken")
	})
	const positionKey = "apisix-identity:state:orgsync:events:position"
	eventually(t, 15*time.Second, "the watcher saved its position after a poll", func() bool {
		return rdb.Exists(ctx, positionKey).Val() == 1
	})
	require.EqualValues(t, 1, rdb.Exists(ctx, lease).Val())
	require.NoError(t, r.Stop())
	assert.Contains(t, r.Output(), "go-runner stopping")
	assert.EqualValues(t, 0, rdb.Exists(ctx, lease).Val(), "lease released on SIGTERM, not left to expire")
	position, err := rdb.Get(ctx, positionKey).Result()
	require.NoError(t, err, "the watcher's position is kept in Redis for the next runner")
	// Sealed like cached values: version, time and MAC (41 bytes), then the position.
	require.Greater(t, len(position), 41)
	assert.Regexp(t, `^\d{13}\|`, position[41:])
}

func TestBadEnvironmentStopsTheRunner(t *testing.T) {
	cmd := exec.Command(runnerBinary, "run")
	cmd.Env = []string{"APISIX_LISTEN_ADDRESS=unix:/tmp/air-bad.sock", "KEYCLOAK_URL=https://sso.example.org",
		"KEYCLOAK_REALM=olapps", "KEYCLOAK_CLIENT_ID=c", "KEYCLOAK_CLIENT_SECRET=top-secret-value", "KEYCLOAK_TIMEOUT=fast"}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the runner must not start")
	assert.Contains(t, string(out), "KEYCLOAK_TIMEOUT")
	assert.NotContains(t, string(out), "top-secret-value")
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	return string(b)
}

func itoa(n int) string { return strconv.Itoa(n) }

// SIGTERM while a call waits on a slow Keycloak: the call finishes before the
// runner exits (the runner library alone would drop it).
func TestSIGTERMLetsCallsUnderWayFinish(t *testing.T) {
	proxy := newKeycloakProxy(t)
	e := baseEnv(t, proxy.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	// Longer than the default: outside APISIX (which kills at 1 s) a
	// supervisor may wait longer, and the variable says how long.
	e["RUNNER_SHUTDOWN_GRACE"] = "5s"
	r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: runnerBinary, Args: []string{"run"}, Env: e.list(),
		StopTimeout: 10 * time.Second})
	require.NoError(t, err)
	gw := apisix.NewGateway(r.Socket())
	defer gw.Close()
	user := kctest.CreateUser(t, "drain")
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{"timeout":"5s"}`))

	proxy.delay.Store(int64(1500 * time.Millisecond))
	done := make(chan *apisix.Result, 1)
	go func() {
		h := http.Header{}
		for k, v := range headersOf(sess) {
			h.Set(k, v)
		}
		res, err := gw.Do(context.Background(), route, &apisix.Request{Method: http.MethodGet, Path: "/app", Header: h})
		if err != nil {
			res = &apisix.Result{Status: -1}
		}
		done <- res
	}()
	time.Sleep(500 * time.Millisecond) // the call is now waiting on Keycloak
	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop() }()
	res := <-done
	assert.Equal(t, 200, res.Status, "the call under way at SIGTERM is answered")
	assert.Equal(t, "keycloak", res.UpstreamHeader.Get("X-User-Orgs-Source"))
	require.NoError(t, <-stopped)
}

// APISIX kills the runner about a second after SIGTERM. With a call under way
// and the watcher's poll stuck on a slow Keycloak, the lease is released and
// the runner has exited within that second.
func TestSIGTERMReleasesTheLeaseWithinASecond(t *testing.T) {
	proxy := newKeycloakProxy(t)
	e := baseEnv(t, proxy.URL)
	opts, err := redis.ParseURL(e["REDIS_URL"])
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	const lease = "apisix-identity:lease:orgsync:events:lease"
	ctx := context.Background()

	// StopTimeout 1 s: SIGKILL when APISIX would send it. The binary is built
	// as it ships, without -race: the race detector's own exit work can take
	// hundreds of milliseconds.
	r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: shippedBinary(t), Args: []string{"run"}, Env: e.list()})
	require.NoError(t, err)
	gw := apisix.NewGateway(r.Socket())
	defer gw.Close()
	eventually(t, 15*time.Second, "this runner takes the watcher lease", func() bool {
		return strings.Contains(r.Output(), "admin event watcher lease taken")
	})
	user := kctest.CreateUser(t, "quickstop")
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{"timeout":"10s"}`))

	proxy.delay.Store(int64(5 * time.Second)) // every Keycloak call, the watcher's polls too
	go func() {
		h := http.Header{}
		for k, v := range headersOf(sess) {
			h.Set(k, v)
		}
		_, _ = gw.Do(context.Background(), route, &apisix.Request{Method: http.MethodGet, Path: "/app", Header: h})
	}()
	time.Sleep(1500 * time.Millisecond) // the call and a poll now wait on Keycloak
	start := time.Now()
	err = r.Stop()
	took := time.Since(start)
	assert.NoError(t, err, "the runner must exit before APISIX's SIGKILL:\n%s", r.Output())
	assert.Less(t, took, time.Second)
	assert.Contains(t, r.Output(), "go-runner stopping with calls still under way", "the stuck call did not hold the exit up")
	assert.EqualValues(t, 0, rdb.Exists(ctx, lease).Val(), "lease released on SIGTERM, not left to expire")
}

var (
	shippedOnce sync.Once
	shippedPath string
	shippedErr  error
)

// shippedBinary is the runner built as the Dockerfile builds it (no -race): the
// binary the ops tests check, and the one memory and load are measured on
// (the race detector's shadow memory and slowdown would be measured instead).
func shippedBinary(t *testing.T) string {
	t.Helper()
	shippedOnce.Do(func() {
		shippedPath = filepath.Join(filepath.Dir(runnerBinary), "go-runner-shipped")
		build := exec.Command("go", "build", "-trimpath", "-o", shippedPath, "./cmd/go-runner")
		build.Dir = repoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			shippedErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	require.NoError(t, shippedErr)
	return shippedPath
}

// /readyz reports Redis, Keycloak's reachability and its breaker: 200 when
// all configured ones answer, 503 naming the one that does not.
func TestReadyz(t *testing.T) {
	proxy := newKeycloakProxy(t)
	addr := "127.0.0.1:" + itoa(freePort(t))
	e := baseEnv(t, proxy.URL)
	e["RUNNER_METRICS_ADDR"] = addr
	startRunner(t, e)
	type state struct {
		Ready    bool
		Redis    struct{ Configured, Up bool }
		Keycloak *struct {
			Reachable bool
			Breaker   string
		}
	}
	get := func() (int, state) {
		resp, err := http.Get("http://" + addr + "/readyz")
		require.NoError(t, err)
		defer resp.Body.Close()
		var s state
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
		return resp.StatusCode, s
	}
	var code int
	var s state
	eventually(t, 10*time.Second, "ready", func() bool { code, s = get(); return code == 200 })
	assert.True(t, s.Ready)
	assert.True(t, s.Redis.Configured && s.Redis.Up)
	require.NotNil(t, s.Keycloak)
	assert.True(t, s.Keycloak.Reachable)
	assert.Equal(t, "closed", s.Keycloak.Breaker)

	proxy.down.Store(true)
	// The breaker may open first (the watcher's polls fail); the probe sees it within its 5 s.
	eventually(t, 15*time.Second, "not ready, Keycloak unreachable", func() bool {
		code, s = get()
		return code == 503 && !s.Keycloak.Reachable
	})
	assert.False(t, s.Ready)
	assert.True(t, s.Redis.Up, "Redis is still fine")
	proxy.down.Store(false)
	eventually(t, 15*time.Second, "ready again", func() bool { code, _ = get(); return code == 200 })

	// A runner whose Redis is gone.
	addr2 := "127.0.0.1:" + itoa(freePort(t))
	e2 := baseEnv(t, kctest.Env(t).URL)
	e2["RUNNER_METRICS_ADDR"] = addr2
	e2["REDIS_URL"] = "redis://127.0.0.1:" + itoa(freePort(t)) + "/0"
	e2["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	startRunner(t, e2)
	addr = addr2
	eventually(t, 10*time.Second, "not ready without Redis", func() bool { code, s = get(); return code == 503 })
	assert.True(t, s.Redis.Configured)
	assert.False(t, s.Redis.Up)
}
