//go:build integration

// Package integration drives the real runner binary through the real unix
// socket protocol (test/apisix plays APISIX) against the real Keycloak and
// Redis that scripts/keycloak.sh and scripts/redis.sh start.
package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

const webhookSecret = "integration-webhook-secret-0123456789abcdef"

// redisValueSecret seals the runners' cached values in Redis (REDIS_VALUE_SECRET); the tests that
// forge values write without it.
const redisValueSecret = "integration-redis-value-secret-0123456789"

var (
	runnerBinary   string
	signingKeyFile string
)

func TestMain(m *testing.M) {
	// Integration tests exist to talk to the real services: a missing one is a
	// failure, never a skip (kctest fails instead of skipping under CI=true).
	os.Setenv("CI", "true")
	dir, err := os.MkdirTemp("", "air-it-")
	if err != nil {
		panic(err)
	}
	runnerBinary = filepath.Join(dir, "go-runner")
	build := exec.Command("go", "build", "-race", "-o", runnerBinary, "./cmd/go-runner")
	build.Dir = repoRoot()
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the runner:", err)
		os.Exit(1)
	}
	signingKeyFile = filepath.Join(dir, "signing-key.pem")
	writeSigningKey(signingKeyFile)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func writeSigningKey(path string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		panic(err)
	}
}

func redisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("REDIS_TEST_URL")
	if u == "" {
		if b, err := os.ReadFile(filepath.Join(repoRoot(), ".work", "redis.env")); err == nil {
			if m := regexp.MustCompile(`(?m)^REDIS_TEST_URL=(.*)$`).FindSubmatch(b); m != nil {
				u = string(m[1])
			}
		}
	}
	if u == "" {
		t.Fatal("no test Redis: set REDIS_TEST_URL (scripts/redis.sh start)")
	}
	return u
}

// env is a runner's environment, as nginx_config.envs would pass it.
type env map[string]string

func (e env) list() []string {
	out := make([]string, 0, len(e))
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// baseEnv points the runner at keycloakURL (the real Keycloak, or a proxy in
// front of it) and at the test Redis, with its own key prefix per test.
// Behind a proxy, the realm's issuer is named: the tokens carry Keycloak's
// own address, which orgsync compares whole.
func baseEnv(t testing.TB, keycloakURL string) env {
	s := kctest.Env(t)
	e := env{
		"KEYCLOAK_URL":             keycloakURL,
		"KEYCLOAK_REALM":           s.Realm,
		"KEYCLOAK_CLIENT_ID":       s.SAClientID,
		"KEYCLOAK_CLIENT_SECRET":   s.SAClientSecret,
		"KEYCLOAK_EVENTS_INTERVAL": "1s",
		"REDIS_URL":                redisURL(t),
		"REDIS_VALUE_SECRET":       redisValueSecret,
		"RUNNER_SIGNING_KEY_FILE":  signingKeyFile,
		"RUNNER_LOG_LEVEL":         "info",
		"ORGSYNC_WEBHOOK_SECRET":   webhookSecret,
	}
	if keycloakURL != s.URL {
		e["KEYCLOAK_ISSUER"] = s.Issuer
	}
	return e
}

type runner struct {
	*apisix.Runner
	gw *apisix.Gateway
}

func startRunner(t *testing.T, e env) *runner {
	t.Helper()
	return startRunnerBinary(t, runnerBinary, e)
}

func startRunnerBinary(t *testing.T, binary string, e env) *runner {
	t.Helper()
	r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: binary, Args: []string{"run"}, Env: e.list(),
		StopTimeout: 5 * time.Second})
	require.NoError(t, err)
	gw := apisix.NewGateway(r.Socket())
	t.Cleanup(func() {
		gw.Close()
		_ = r.Stop()
		out := r.Output()
		if t.Failed() {
			t.Logf("runner output:\n%s", out)
		}
		require.NotContains(t, out, "panic", "the runner must never panic")
		for _, secret := range []string{kctest.Env(t).SAClientSecret, webhookSecret} {
			require.NotContains(t, out, secret, "a secret leaked into the log")
		}
	})
	return &runner{Runner: r, gw: gw}
}

func (r *runner) do(t *testing.T, route *apisix.Route, headers map[string]string) *apisix.Result {
	t.Helper()
	h := http.Header{}
	for k, v := range headers {
		h[k] = []string{v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.gw.Do(ctx, route, &apisix.Request{Method: http.MethodGet, Path: "/app", Header: h, SrcIP: "192.0.2.10"})
	require.NoError(t, err)
	return res
}

// userinfoConf is the userinfo config of the app routes.
// userinfoConf is a userinfo conf verifying tokens of the realm's apisix
// client (openid-connect's), with an assertion for mitxonline and extra keys.
func userinfoConf(t *testing.T, extra string) apisix.PluginConf {
	return userinfoConfFor(t, kctest.Env(t).ClientID, extra)
}

// userinfoConfFor is userinfoConf for tokens issued to client; "" leaves
// audience out, for extra to say "any_audience" (or nothing).
func userinfoConfFor(t *testing.T, client, extra string) apisix.PluginConf {
	audience := ""
	if client != "" {
		audience = fmt.Sprintf(`,"audience":%q`, client)
	}
	return apisix.PluginConf{Name: "userinfo", Value: fmt.Sprintf(
		`{"issuer":%q%s,"assertion":{"audience":"mitxonline","ttl":"60s"}%s}`, kctest.Env(t).Issuer, audience, extra)}
}

var routeSeq atomic.Int64

func newRoute(confs ...apisix.PluginConf) *apisix.Route {
	return &apisix.Route{ID: fmt.Sprintf("route-%d", routeSeq.Add(1)), Conf: confs}
}

// headersOf is what openid-connect sets for a logged-in session.
func headersOf(s *kctest.Session) map[string]string {
	return map[string]string{"x-userinfo": s.UserinfoHeader(), "x-access-token": s.AccessToken}
}

func decodeUserinfo(t *testing.T, v string) map[string]any {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(v)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// verifyAssertion checks an assertion with the JWKS the runner's JWKS route
// serves, as an upstream app would.
func verifyAssertion(t *testing.T, r *runner, jws string) map[string]any {
	t.Helper()
	res := r.do(t, newRoute(apisix.PluginConf{Name: "userinfo", Value: `{"jwks":true}`}), nil)
	require.Equal(t, 200, res.Status)
	require.False(t, res.Upstream)
	var set jose.JSONWebKeySet
	require.NoError(t, json.Unmarshal(res.Body, &set))
	obj, err := jose.ParseSigned(jws, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	require.NoError(t, err)
	keys := set.Key(obj.Signatures[0].Header.KeyID)
	require.Len(t, keys, 1)
	payload, err := obj.Verify(keys[0])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(payload, &claims))
	return claims
}

// keycloakProxy stands between the runners and the real Keycloak to count
// the admin calls and to inject an outage; the answers come from Keycloak.
type keycloakProxy struct {
	URL    string
	mu     sync.Mutex
	counts map[string]int
	down   atomic.Bool
	// delay holds every call this long (a slow Keycloak).
	delay atomic.Int64
}

var orgLookupPath = regexp.MustCompile(`/organizations/members/[^/]+/organizations$`)

func newKeycloakProxy(t *testing.T) *keycloakProxy {
	target, err := url.Parse(kctest.Env(t).URL)
	require.NoError(t, err)
	p := &keycloakProxy{counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			// A dropped connection, as a crashed Keycloak gives.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		p.mu.Lock()
		p.counts[r.URL.Path]++
		p.mu.Unlock()
		time.Sleep(time.Duration(p.delay.Load()))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// orgLookups counts organization lookups for user.
func (p *keycloakProxy) orgLookups(user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for path, c := range p.counts {
		if orgLookupPath.MatchString(path) && strings.Contains(path, "/members/"+user+"/") {
			n += c
		}
	}
	return n
}

// eventually polls cond until it holds or timeout passes, and returns how
// long it took.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
