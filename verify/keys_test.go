package verify_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"go/parser"
	"go/token"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// gateway serves a key ring's JWKS as userinfo's {"jwks":true} route does,
// counting fetches; fail makes it answer 500.
type gateway struct {
	mu      sync.Mutex
	keys    *assertion.KeyRing
	body    []byte
	fail    bool
	fetches atomic.Int32
	srv     *httptest.Server
}

func newGateway(t *testing.T, keys *assertion.KeyRing) *gateway {
	t.Helper()
	g := &gateway{keys: keys}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		g.fetches.Add(1)
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.fail {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		body := g.body
		if body == nil {
			body = g.keys.JWKS()
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gateway) publish(keys *assertion.KeyRing) { g.mu.Lock(); g.keys = keys; g.mu.Unlock() }
func (g *gateway) setFail(f bool)                  { g.mu.Lock(); g.fail = f; g.mu.Unlock() }

func newKeys(t *testing.T, previous ...*ecdsa.PrivateKey) (*assertion.KeyRing, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	r, err := assertion.NewKeyRing(k, toSigners(previous)...)
	require.NoError(t, err)
	return r, k
}

func toSigners(keys []*ecdsa.PrivateKey) []crypto.Signer {
	out := make([]crypto.Signer, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func sign(t *testing.T, keys *assertion.KeyRing, now time.Time, sub string) string {
	t.Helper()
	tok, err := keys.SignClaims(&assertion.Claims{Issuer: "gw", Audience: "app", Subject: sub, IssuedAt: now,
		Expiry: now.Add(time.Hour), Organization: json.RawMessage(`{"acme":{"id":"a1","tier":["gold"]}}`),
		OrganizationSource: "cache", Profile: map[string]json.RawMessage{"email": json.RawMessage(`"a@x.org"`)}})
	require.NoError(t, err)
	return tok
}

func remoteVerifier(t *testing.T, g *gateway, c *clock) *verify.Verifier {
	t.Helper()
	v, err := verify.New(verify.Config{JWKSURL: g.srv.URL, Issuer: "gw", Audience: "app", Now: c.Now,
		RefreshInterval: 10 * time.Second, CacheTTL: 5 * time.Minute})
	require.NoError(t, err)
	return v
}

func TestFetchesTheKeySetOnceAndReusesIt(t *testing.T) {
	keys, _ := newKeys(t)
	g := newGateway(t, keys)
	c := &clock{now: time.Now()}
	v := remoteVerifier(t, g, c)
	for i := 0; i < 5; i++ {
		id, err := v.VerifyToken(context.Background(), sign(t, keys, c.Now(), "alice"))
		require.NoError(t, err)
		assert.Equal(t, "alice", id.Subject)
	}
	assert.Equal(t, int32(1), g.fetches.Load())
}

func TestUnknownKidsFetchAtMostOncePerInterval(t *testing.T) {
	old, oldKey := newKeys(t)
	g := newGateway(t, old)
	c := &clock{now: time.Now()}
	v := remoteVerifier(t, g, c)
	_, err := v.VerifyToken(context.Background(), sign(t, old, c.Now(), "alice"))
	require.NoError(t, err)

	// A rotation: the gateway signs with a new key and publishes both.
	rotated, _ := newKeys(t, oldKey)
	g.publish(rotated)
	c.advance(11 * time.Second)
	// Many requests at once, each with a kid nobody publishes (an attacker
	// probing), and the genuine new kid: one fetch for them all.
	var wg sync.WaitGroup
	var refusedForged atomic.Int32
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			other, _ := newKeys(t)
			_, err := v.VerifyToken(context.Background(), sign(t, other, c.Now(), "mallory"+strconv.Itoa(i)))
			if verify.ReasonOf(err) == verify.ReasonUnknownKey {
				refusedForged.Add(1)
			}
		}(i)
	}
	wg.Wait()
	assert.Equal(t, int32(40), refusedForged.Load())
	assert.Equal(t, int32(2), g.fetches.Load(), "unknown kids must share one fetch per interval")
	_, err = v.VerifyToken(context.Background(), sign(t, rotated, c.Now(), "alice"))
	require.NoError(t, err, "the fetch the forged kids caused brought the new key")
	_, err = v.VerifyToken(context.Background(), sign(t, old, c.Now(), "alice"))
	require.NoError(t, err, "the previous key is still published")
	assert.Equal(t, int32(2), g.fetches.Load())
}

func TestNewKeyRightAfterAFetchWaitsForTheInterval(t *testing.T) {
	old, _ := newKeys(t)
	g := newGateway(t, old)
	c := &clock{now: time.Now()}
	v := remoteVerifier(t, g, c)
	_, err := v.VerifyToken(context.Background(), sign(t, old, c.Now(), "alice"))
	require.NoError(t, err)
	next, _ := newKeys(t)
	g.publish(next)
	tok := sign(t, next, c.Now(), "alice")
	_, err = v.VerifyToken(context.Background(), tok)
	assert.Equal(t, verify.ReasonUnknownKey, verify.ReasonOf(err))
	assert.Contains(t, err.Error(), "unknown kid")
	assert.Equal(t, int32(1), g.fetches.Load())
	c.advance(10 * time.Second)
	_, err = v.VerifyToken(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, int32(2), g.fetches.Load())
}

func TestStaleKeySetServesWhileTheGatewayIsDownAndRetiredKeysStop(t *testing.T) {
	keys, _ := newKeys(t)
	g := newGateway(t, keys)
	c := &clock{now: time.Now()}
	v := remoteVerifier(t, g, c)
	_, err := v.VerifyToken(context.Background(), sign(t, keys, c.Now(), "alice"))
	require.NoError(t, err)

	g.setFail(true)
	c.advance(6 * time.Minute) // past CacheTTL
	_, err = v.VerifyToken(context.Background(), sign(t, keys, c.Now(), "alice"))
	require.NoError(t, err, "a failed refresh keeps the set it had")
	assert.Equal(t, int32(2), g.fetches.Load())

	// The gateway is back and has retired the key: refused once refreshed.
	next, _ := newKeys(t)
	g.publish(next)
	g.setFail(false)
	c.advance(11 * time.Second)
	_, err = v.VerifyToken(context.Background(), sign(t, keys, c.Now(), "alice"))
	assert.Equal(t, verify.ReasonUnknownKey, verify.ReasonOf(err), "%v", err)
	assert.Equal(t, int32(3), g.fetches.Load())
}

func TestNoKeySetIsUnavailableNotUnauthorized(t *testing.T) {
	keys, _ := newKeys(t)
	g := newGateway(t, keys)
	g.setFail(true)
	c := &clock{now: time.Now()}
	v := remoteVerifier(t, g, c)
	handler := v.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("handler reached without a verified identity")
	}))
	for i := 0; i < 3; i++ {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(verify.DefaultHeader, sign(t, keys, c.Now(), "alice"))
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
		assert.JSONEq(t, `{"error":"identity_assertion","reason":"keys_unavailable"}`, rec.Body.String())
	}
	assert.Equal(t, int32(1), g.fetches.Load(), "a dead gateway is asked once per interval, not per request")
}

func TestOversizedKeySetAndTokenAreRefused(t *testing.T) {
	keys, _ := newKeys(t)
	g := newGateway(t, keys)
	g.body = []byte(`{"keys":[` + strings.Repeat(" ", 1<<20) + `]}`)
	c := &clock{now: time.Now()}
	v := remoteVerifier(t, g, c)
	_, err := v.VerifyToken(context.Background(), sign(t, keys, c.Now(), "alice"))
	assert.Equal(t, verify.ReasonKeysUnavailable, verify.ReasonOf(err))

	huge := strings.Repeat("a", verify.MaxTokenBytes) + ".b.c"
	_, err = v.VerifyToken(context.Background(), huge)
	assert.Equal(t, verify.ReasonMalformed, verify.ReasonOf(err))
	assert.Equal(t, int32(1), g.fetches.Load(), "an oversized token costs no fetch")
}

func TestTwoKeysUnderOneKidAreNotTrusted(t *testing.T) {
	a, _ := newKeys(t)
	b, _ := newKeys(t)
	var sa, sb struct{ Keys []map[string]any }
	require.NoError(t, json.Unmarshal(a.JWKS(), &sa))
	require.NoError(t, json.Unmarshal(b.JWKS(), &sb))
	sb.Keys[0]["kid"] = a.KeyID()
	set, _ := json.Marshal(map[string]any{"keys": []any{sa.Keys[0], sb.Keys[0]}})
	_, err := verify.New(verify.Config{JWKS: set, Issuer: "gw", Audience: "app"})
	assert.ErrorContains(t, err, "no usable key")
}

func TestMiddleware(t *testing.T) {
	keys, _ := newKeys(t)
	var logs bytes.Buffer
	v, err := verify.New(verify.Config{JWKS: keys.JWKS(), Issuer: "gw", Audience: "app",
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	var got verify.Identity
	handler := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := verify.FromContext(r.Context())
		require.True(t, ok)
		got = id
		w.WriteHeader(http.StatusNoContent)
	}))
	serve := func(values ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/courses", nil)
		for _, val := range values {
			req.Header.Add("X-Identity-Assertion", val)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec
	}
	good := sign(t, keys, time.Now(), "alice")
	rec := serve(good)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	assert.Equal(t, "alice", got.Subject)
	assert.Equal(t, "a@x.org", got.Email)
	assert.Equal(t, "cache", got.OrganizationSource)
	org, ok := got.Organization("acme")
	require.True(t, ok)
	assert.Equal(t, verify.Organization{Alias: "acme", ID: "a1", Attributes: map[string][]string{"tier": {"gold"}}}, org)
	assert.Equal(t, []string{"acme"}, got.Aliases())

	for name, tc := range map[string]struct {
		values []string
		reason string
	}{
		"missing":   {nil, "missing"},
		"empty":     {[]string{""}, "missing"},
		"garbage":   {[]string{"not-a-jwt"}, "malformed"},
		"two":       {[]string{good, good}, "malformed"},
		"other key": {[]string{sign(t, func() *assertion.KeyRing { k, _ := newKeys(t); return k }(), time.Now(), "mallory")}, "unknown_key"},
	} {
		rec := serve(tc.values...)
		assert.Equal(t, http.StatusUnauthorized, rec.Code, name)
		assert.JSONEq(t, `{"error":"identity_assertion","reason":"`+tc.reason+`"}`, rec.Body.String(), name)
		assert.NotContains(t, rec.Body.String(), "eyJ", "the answer never echoes a token")
	}
	assert.Contains(t, logs.String(), "reason=unknown_key")
	assert.NotContains(t, logs.String(), "eyJ", "the log never holds a token")
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	keys, _ := newKeys(t)
	for name, cfg := range map[string]verify.Config{
		"no issuer":   {JWKS: keys.JWKS(), Audience: "app"},
		"no audience": {JWKS: keys.JWKS(), Issuer: "gw"},
		"no keys":     {Issuer: "gw", Audience: "app"},
		"both":        {JWKS: keys.JWKS(), JWKSURL: "http://127.0.0.1:1/", Issuer: "gw", Audience: "app"},
		"bad set":     {JWKS: []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"x"}]}`), Issuer: "gw", Audience: "app"},
	} {
		_, err := verify.New(cfg)
		assert.Error(t, err, name)
	}
}

// TestImportsNoRunnerInternals keeps the package usable by apps on their
// own: its non-test files import neither internal/ nor the plugins.
func TestImportsNoRunnerInternals(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		parsed, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range parsed.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			assert.False(t, strings.HasPrefix(path, "github.com/apisix-identity-runner/"), "%s imports %s", f, path)
		}
	}
}
