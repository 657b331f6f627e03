package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/userinfo"
	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// gateway plays the two routes of conf/apisix.yaml the demo app relies on,
// with the real userinfo plugin: the JWKS route and an app route that signs.
type gateway struct {
	plugin   *userinfo.Plugin
	appConf  any
	jwksConf any
	jwks     *httptest.Server
	fetches  atomic.Int32
}

func newGateway(t *testing.T, keys *assertion.KeyRing) *gateway {
	t.Helper()
	g := &gateway{}
	g.rotate(t, keys)
	return g
}

// rotate restarts the gateway's plugin with keys, as a runner restarted with
// a new RUNNER_SIGNING_KEY_FILE; the JWKS server stays.
func (g *gateway) rotate(t *testing.T, keys *assertion.KeyRing) {
	t.Helper()
	g.plugin = userinfo.New(userinfo.Deps{Emitter: emit.New(emit.Options{Keys: keys})})
	jwksConf, err := g.plugin.ParseConf([]byte(`{"jwks": true}`))
	require.NoError(t, err)
	// verify_token false stands in for a verified login here: the token checks
	// have their own tests in plugins/userinfo; this test is about the app side.
	g.appConf, err = g.plugin.ParseConf([]byte(`{"verify_token": false, "assertion": {"audience": "demo-app", "ttl": "60s"}}`))
	require.NoError(t, err)
	require.NoError(t, g.appConf.(interface{ Err() error }).Err())
	g.jwksConf = jwksConf
	if g.jwks == nil {
		g.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.fetches.Add(1)
			g.plugin.RequestFilter(g.jwksConf, w, runnertest.NewRequest(1, 1, nil))
		}))
		t.Cleanup(g.jwks.Close)
	}
}

// forward runs the app route's plugin on a request carrying X-Userinfo and
// returns the headers APISIX would send upstream.
func (g *gateway) forward(t *testing.T, userinfoJSON string) http.Header {
	t.Helper()
	req := runnertest.NewRequest(2, 2, map[string]string{
		"X-Userinfo": base64.StdEncoding.EncodeToString([]byte(userinfoJSON)),
	})
	rec := httptest.NewRecorder()
	g.plugin.RequestFilter(g.appConf, rec, req)
	require.Equal(t, http.StatusOK, rec.Code, "plugin refused: %s", rec.Body.String())
	require.Empty(t, rec.Body.String(), "plugin answered instead of passing the request on")
	return req.Header().View().Clone()
}

func newApp(t *testing.T, jwksURL, audience string, now func() time.Time) *app {
	t.Helper()
	v, err := verify.New(verify.Config{JWKSURL: jwksURL, Audience: audience, Issuer: "apisix-identity-runner",
		HTTPClient: &http.Client{Timeout: 2 * time.Second}, Now: now})
	require.NoError(t, err)
	return &app{verifier: v}
}

func call(t *testing.T, a *app, h http.Header) report {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/courses", nil)
	for k, vs := range h {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	a.routes().ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	var rep report
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &rep))
	return rep
}

func TestVerifiesTheAssertionTheRunnerSigns(t *testing.T) {
	keys, err := assertion.Generate()
	require.NoError(t, err)
	g := newGateway(t, keys)
	h := g.forward(t, `{"sub":"5b7c3c1e-alice","email":"alice@acme.example.com","organization":{"acme":{"id":"a1"}}}`)
	require.NotEmpty(t, h.Get("X-Identity-Assertion"))

	a := newApp(t, g.jwks.URL, "demo-app", nil)
	rep := call(t, a, h)
	assert.True(t, rep.Assertion.Present)
	assert.True(t, rep.Assertion.Valid, rep.Assertion.Error)
	assert.Equal(t, "5b7c3c1e-alice", rep.Assertion.Claims["sub"])
	assert.Equal(t, map[string]any{"acme": map[string]any{"id": "a1"}}, rep.Assertion.Claims["organization"])
	assert.Equal(t, map[string]orgReport{"acme": {ID: "a1"}}, rep.Assertion.Organizations)
	assert.Equal(t, "5b7c3c1e-alice", rep.Headers["X-User-Id"])
	assert.Equal(t, "acme", rep.Headers["X-User-Orgs"])
	assert.Equal(t, map[string]any{"sub": "5b7c3c1e-alice", "email": "alice@acme.example.com",
		"organization": map[string]any{"acme": map[string]any{"id": "a1"}}}, rep.Userinfo)

	// The key set is fetched once, then reused.
	require.True(t, call(t, a, h).Assertion.Valid)
	assert.Equal(t, int32(1), g.fetches.Load())
}

func TestRefusesAnAssertionForAnotherApp(t *testing.T) {
	keys, err := assertion.Generate()
	require.NoError(t, err)
	g := newGateway(t, keys)
	h := g.forward(t, `{"sub":"alice"}`)

	rep := call(t, newApp(t, g.jwks.URL, "another-app", nil), h)
	assert.True(t, rep.Assertion.Present)
	assert.False(t, rep.Assertion.Valid)
	assert.Contains(t, rep.Assertion.Error, "aud")
}

// An app that names its realm refuses an assertion that does not name it:
// here one from a route that verified no token (verify_token false).
func TestRefusesAnAssertionWithoutItsRealm(t *testing.T) {
	keys, err := assertion.Generate()
	require.NoError(t, err)
	g := newGateway(t, keys)
	h := g.forward(t, `{"sub":"alice"}`)
	v, err := verify.New(verify.Config{JWKSURL: g.jwks.URL, Audience: "demo-app", Issuer: "apisix-identity-runner",
		TokenIssuer: "http://localhost:8080/realms/demo", HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	require.NoError(t, err)
	rep := call(t, &app{verifier: v}, h)
	assert.True(t, rep.Assertion.Present)
	assert.False(t, rep.Assertion.Valid)
	assert.Equal(t, verify.ReasonTokenIssuer, verify.ReasonOf(errorOf(t, v, h)))
}

func errorOf(t *testing.T, v *verify.Verifier, h http.Header) error {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header = h.Clone()
	_, err := v.Verify(req)
	require.Error(t, err)
	return err
}

func TestRefusesATamperedAssertion(t *testing.T) {
	keys, err := assertion.Generate()
	require.NoError(t, err)
	g := newGateway(t, keys)
	h := g.forward(t, `{"sub":"alice"}`)
	parts := strings.Split(h.Get("X-Identity-Assertion"), ".")
	require.Len(t, parts, 3)
	forged, err := json.Marshal(map[string]any{"iss": "apisix-identity-runner", "aud": "demo-app", "sub": "mallory",
		"exp": time.Now().Add(time.Minute).Unix()})
	require.NoError(t, err)
	h.Set("X-Identity-Assertion", parts[0]+"."+base64.RawURLEncoding.EncodeToString(forged)+"."+parts[2])

	rep := call(t, newApp(t, g.jwks.URL, "demo-app", nil), h)
	assert.False(t, rep.Assertion.Valid)
	assert.Contains(t, rep.Assertion.Error, "signature")
}

func TestRefusesAnExpiredAssertion(t *testing.T) {
	keys, err := assertion.Generate()
	require.NoError(t, err)
	g := newGateway(t, keys)
	h := g.forward(t, `{"sub":"alice"}`)

	a := newApp(t, g.jwks.URL, "demo-app", func() time.Time { return time.Now().Add(2 * time.Minute) })
	rep := call(t, a, h)
	assert.False(t, rep.Assertion.Valid)
	assert.Contains(t, rep.Assertion.Error, "expired")
}

func TestRefetchesTheKeySetAfterRotation(t *testing.T) {
	old, err := assertion.Generate()
	require.NoError(t, err)
	g := newGateway(t, old)
	clock := time.Now()
	a := newApp(t, g.jwks.URL, "demo-app", func() time.Time { return clock })
	require.True(t, call(t, a, g.forward(t, `{"sub":"alice"}`)).Assertion.Valid)

	rotated, err := assertion.Generate()
	require.NoError(t, err)
	g.rotate(t, rotated)
	h := g.forward(t, `{"sub":"alice"}`)
	// An unknown kid right after a fetch is refused without asking again...
	rep := call(t, a, h)
	assert.False(t, rep.Assertion.Valid)
	assert.Contains(t, rep.Assertion.Error, "unknown kid")
	assert.Equal(t, int32(1), g.fetches.Load())
	// ...and accepted once the refetch interval has passed.
	clock = clock.Add(verify.DefaultRefreshInterval + time.Second)
	rep = call(t, a, h)
	assert.True(t, rep.Assertion.Valid, rep.Assertion.Error)
	assert.Equal(t, int32(2), g.fetches.Load())
}

func TestHidesCredentialsAndReportsNoAssertion(t *testing.T) {
	h := http.Header{}
	h.Set("X-Access-Token", "eyJ.secret.token")
	h.Set("Cookie", "session=abc")
	rep := call(t, newApp(t, "http://127.0.0.1:1/unused", "demo-app", nil), h)
	assert.False(t, rep.Assertion.Present)
	assert.NotContains(t, rep.Headers["X-Access-Token"], "secret")
	assert.NotContains(t, rep.Headers["Cookie"], "abc")
}

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(newApp(t, "http://127.0.0.1:1/unused", "demo-app", nil).routes())
	defer srv.Close()
	assert.Equal(t, 0, healthcheck(strings.TrimPrefix(srv.URL, "http://")))
	assert.Equal(t, 1, healthcheck("no-port"))
}
