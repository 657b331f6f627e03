package userinfo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// recordingRevoker is the real in-process store, with every Revoke call
// recorded so a test can say that nothing was revoked.
type recordingRevoker struct {
	*cache.Revocations
	mu    sync.Mutex
	calls []cache.Revocation
	// awaited: each call asked the store to wait for the fleet (cache.AwaitPeers).
	awaited []bool
}

func (r *recordingRevoker) Revoke(ctx context.Context, rev cache.Revocation) error {
	r.mu.Lock()
	r.calls = append(r.calls, rev)
	r.awaited = append(r.awaited, cache.AwaitingPeers(ctx))
	r.mu.Unlock()
	return r.Revocations.Revoke(ctx, rev)
}

func (r *recordingRevoker) revoked() []cache.Revocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]cache.Revocation(nil), r.calls...)
}

func newRevoker(t *testing.T) *recordingRevoker {
	t.Helper()
	store, err := cache.NewRevocations(nil, cache.RevocationOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	return &recordingRevoker{Revocations: store}
}

// logoutFixture is one process: the plugin, its revocations, a back-channel
// logout route and an app route of the same realm.
type logoutFixture struct {
	is      *tokentest.Issuer
	plugin  *Plugin
	revoker *recordingRevoker
	logout  *route
	app     *route
}

func newLogoutFixture(t *testing.T, appExtra string, deps Deps) *logoutFixture {
	t.Helper()
	is := tokentest.NewIssuer(t)
	rev := newRevoker(t)
	deps.Emitter = newEmitter()
	deps.Revocations = rev
	p := New(deps)
	return &logoutFixture{is: is, plugin: p, revoker: rev,
		logout: newRouteOf(t, p, fmt.Sprintf(`{"backchannel_logout":true,"issuer":%q,"audience":"apisix"}`, is.URL)),
		app:    newRouteOf(t, p, confFor(is, appExtra))}
}

var jtis = struct {
	sync.Mutex
	n int
}{}

func nextJTI() string {
	jtis.Lock()
	defer jtis.Unlock()
	jtis.n++
	return "jti-" + strconv.Itoa(jtis.n) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// logoutClaims are what Keycloak 26.5 sends for a session of the apisix
// client.
func logoutClaims(is *tokentest.Issuer, sub, sid string) map[string]any {
	c := map[string]any{
		"iss": is.URL, "aud": "apisix", "typ": "Logout", "iat": time.Now().Unix(), "jti": nextJTI(),
		"events": map[string]any{keycloak.BackchannelLogoutEvent: map[string]any{}},
	}
	if sub != "" {
		c["sub"] = sub
	}
	if sid != "" {
		c["sid"] = sid
	}
	return c
}

func postForm(rt *route, body string, headers map[string]string) *httptest.ResponseRecorder {
	h := map[string]string{"content-type": "application/x-www-form-urlencoded", "content-length": strconv.Itoa(len(body))}
	for k, v := range headers {
		h[k] = v
	}
	r := runnertest.NewRequest(requestIDs.Add(1), rt.token, h)
	r.MethodV = http.MethodPost
	r.BodyV = []byte(body)
	return rt.doRequest(r)
}

func postLogout(rt *route, token string) *httptest.ResponseRecorder {
	return postForm(rt, url.Values{"logout_token": {token}}.Encode(), nil)
}

// sessionOf is a logged-in browser's headers for a token of session sid.
func sessionOf(is *tokentest.Issuer, sub, sid string, iat time.Time) map[string]string {
	tok := is.Claims(sub)
	tok["sid"] = sid
	tok["iat"] = iat.Unix()
	return map[string]string{"x-userinfo": userinfoHeader(map[string]any{"sub": sub}), "x-access-token": is.Sign(tok)}
}

func TestBackchannelLogoutRevokesTheSession(t *testing.T) {
	f := newLogoutFixture(t, "", Deps{})
	alice1 := sessionOf(f.is, "u-alice", "sid-1", time.Now())
	alice2 := sessionOf(f.is, "u-alice", "sid-2", time.Now())
	for _, h := range []map[string]string{alice1, alice2} {
		w, _ := f.app.do(h)
		require.Equal(t, 200, w.Code, w.Body.String())
	}

	w := postLogout(f.logout, f.is.Sign(logoutClaims(f.is, "u-alice", "sid-1")))
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	got := f.revoker.revoked()
	require.Len(t, got, 1)
	assert.Equal(t, cache.Revocation{Issuer: f.is.URL, SessionID: "sid-1", Subject: "u-alice", At: got[0].At, Until: got[0].Until}, got[0])
	assert.WithinDuration(t, time.Now().Add(DefaultRevocationTTL), got[0].Until, 5*time.Second)
	f.revoker.mu.Lock()
	assert.Equal(t, []bool{true}, f.revoker.awaited, "the 200 waits until every runner holds the revocation")
	f.revoker.mu.Unlock()

	// The cached session of sid-1 is refused; sid-2 of the same user passes.
	w, _ = f.app.do(alice1)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Contains(t, w.Body.String(), ReasonSessionRevoked)
	w, _ = f.app.do(alice2)
	assert.Equal(t, 200, w.Code, "another session of the same user is untouched")
}

func TestRevokedSessionIsRefusedBeforeItIsCached(t *testing.T) {
	f := newLogoutFixture(t, "", Deps{})
	require.Equal(t, 200, postLogout(f.logout, f.is.Sign(logoutClaims(f.is, "", "sid-9"))).Code)
	w, _ := f.app.do(sessionOf(f.is, "u-bob", "sid-9", time.Now()))
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Contains(t, w.Body.String(), ReasonSessionRevoked)
}

func TestSubjectLogoutEndsOnlyEarlierSessions(t *testing.T) {
	f := newLogoutFixture(t, "", Deps{})
	before := sessionOf(f.is, "u-carol", "sid-a", time.Now().Add(-time.Minute))
	require.Equal(t, 200, postLogout(f.logout, f.is.Sign(logoutClaims(f.is, "u-carol", ""))).Code)
	w, _ := f.app.do(before)
	assert.Equal(t, http.StatusUnauthorized, w.Code, "a token issued before the sign-out")
	after := sessionOf(f.is, "u-carol", "sid-b", time.Now().Add(2*time.Second))
	w, _ = f.app.do(after)
	assert.Equal(t, 200, w.Code, "a login after the sign-out")
	w, _ = f.app.do(sessionOf(f.is, "u-dave", "sid-c", time.Now().Add(-time.Minute)))
	assert.Equal(t, 200, w.Code, "another user")
}

func TestRevokedBrowserIsSentToLogout(t *testing.T) {
	f := newLogoutFixture(t, `,"on_revoked":{"redirect":"/logout"}`, Deps{})
	browser := sessionOf(f.is, "u-alice", "sid-r", time.Now())
	require.Equal(t, 200, postLogout(f.logout, f.is.Sign(logoutClaims(f.is, "u-alice", "sid-r"))).Code)

	w, _ := f.app.do(mergeHeaders(browser, map[string]string{"accept": "text/html,application/xhtml+xml,*/*;q=0.8",
		"sec-fetch-mode": "navigate"}))
	assert.Equal(t, http.StatusFound, w.Code)
	assert.Equal(t, "/logout", w.Header().Get("Location"))
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))

	for name, extra := range map[string]map[string]string{
		"Accept JSON":           {"accept": "application/json"},
		"XHR":                   {"x-requested-with": "XMLHttpRequest"},
		"fetch":                 {"sec-fetch-mode": "cors"},
		"bearer, no X-Userinfo": {"x-userinfo": ""},
	} {
		h := mergeHeaders(browser, extra)
		if _, ok := extra["x-userinfo"]; ok {
			delete(h, "x-userinfo")
		}
		w, _ := f.app.do(h)
		assert.Equal(t, http.StatusUnauthorized, w.Code, name)
		assert.Contains(t, w.Body.String(), ReasonSessionRevoked, name)
	}
}

func TestOnRevokedConfig(t *testing.T) {
	is := tokentest.NewIssuer(t)
	for _, bad := range []string{`{}`, `{"redirect":""}`, `{"redirect":"https://evil.example/"}`, `{"redirect":"//evil.example/"}`,
		`{"redirect":"/\\evil.example"}`, `{"redirect":"/a\r\nSet-Cookie: x"}`, `{"redirect":"logout"}`, `{"redirect":"/x","y":1}`} {
		v, err := testPlugin.ParseConf([]byte(confFor(is, `,"on_revoked":`+bad)))
		require.NoError(t, err)
		assert.Error(t, v.(*Conf).Err(), bad)
	}
	v, _ := testPlugin.ParseConf([]byte(fmt.Sprintf(`{"issuer":%q,"verify_token":false,"on_revoked":{"redirect":"/logout"}}`, is.URL)))
	assert.Error(t, v.(*Conf).Err(), "on_revoked without a verified token")
	v, _ = testPlugin.ParseConf([]byte(confFor(is, `,"revocation_ttl":"1h"`)))
	assert.ErrorContains(t, v.(*Conf).Err(), "revocation_ttl")
}

func TestBackchannelConfigIsStrict(t *testing.T) {
	is := tokentest.NewIssuer(t)
	base := fmt.Sprintf(`"backchannel_logout":true,"issuer":%q,"audience":"apisix"`, is.URL)
	good := []string{`{` + base + `}`, `{` + base + `,"leeway":"0s","revocation_ttl":"24h","jwks_uri":"http://127.0.0.1/k"}`}
	for _, c := range good {
		v, err := testPlugin.ParseConf([]byte(c))
		require.NoError(t, err)
		assert.NoError(t, v.(*Conf).Err(), c)
	}
	for key, extra := range map[string]string{
		"assertion": `,"assertion":{"audience":"x"}`, "claim_headers": `,"claim_headers":{}`, "on_invalid": `,"on_invalid":"reject"`,
		"verify_token": `,"verify_token":true`, "any_audience": `,"any_audience":false`, "require_user": `,"require_user":false`,
		"max_userinfo_bytes": `,"max_userinfo_bytes":2048`, "on_revoked": `,"on_revoked":{"redirect":"/logout"}`,
		"jwks": `,"jwks":true`,
	} {
		v, err := testPlugin.ParseConf([]byte(`{` + base + extra + `}`))
		require.NoError(t, err)
		assert.ErrorContains(t, v.(*Conf).Err(), key, key)
	}
	for name, c := range map[string]string{
		"no issuer":   `{"backchannel_logout":true,"audience":"apisix"}`,
		"no audience": fmt.Sprintf(`{"backchannel_logout":true,"issuer":%q}`, is.URL),
		"wildcard":    fmt.Sprintf(`{"backchannel_logout":true,"issuer":%q,"audience":"*"}`, is.URL),
		"short ttl":   `{` + base + `,"revocation_ttl":"1m"}`,
		"long ttl":    `{` + base + `,"revocation_ttl":"2000h"}`,
		"unknown":     `{` + base + `,"revocation":"1h"}`,
	} {
		v, err := testPlugin.ParseConf([]byte(c))
		require.NoError(t, err)
		assert.Error(t, v.(*Conf).Err(), name)
	}
}

func hs256(t *testing.T, secret string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}, nil)
	require.NoError(t, err)
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	require.NoError(t, err)
	s, err := obj.CompactSerialize()
	require.NoError(t, err)
	return s
}

func algNone(claims map[string]any) string {
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(payload) + "."
}

// Every bad input of issue 16 item 6: 400 with the specification's JSON
// error, no-store, and nothing revoked.
func TestBackchannelLogoutRefusesBadInput(t *testing.T) {
	f := newLogoutFixture(t, "", Deps{})
	other := tokentest.NewIssuer(t)
	is := f.is
	with := func(change func(map[string]any)) string {
		c := logoutClaims(is, "u-alice", "sid-1")
		change(c)
		return is.Sign(c)
	}
	form := func(tok string) string { return url.Values{"logout_token": {tok}}.Encode() }
	good := is.Sign(logoutClaims(is, "u-alice", "sid-1"))
	accessToken := func() string {
		c := is.Claims("u-alice")
		c["aud"], c["sid"], c["jti"] = "apisix", "sid-1", nextJTI()
		return is.Sign(c)
	}
	idToken := func() string {
		c := is.Claims("u-alice")
		c["typ"], c["aud"], c["sid"], c["jti"], c["nonce"] = "ID", "apisix", "sid-1", nextJTI(), "n"
		return is.Sign(c)
	}
	cases := map[string]struct {
		body    string
		headers map[string]string
	}{
		"another realm":         {body: form(other.Sign(logoutClaims(other, "u-alice", "sid-1")))},
		"another audience":      {body: form(with(func(c map[string]any) { c["aud"] = "other-app" }))},
		"expired":               {body: form(with(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))},
		"too old":               {body: form(with(func(c map[string]any) { c["iat"] = time.Now().Add(-time.Hour).Unix() }))},
		"alg none":              {body: form(algNone(logoutClaims(is, "u-alice", "sid-1")))},
		"HS256, client secret":  {body: form(hs256(t, "apisix-test-secret-padded-to-32-bytes", logoutClaims(is, "u-alice", "sid-1")))},
		"with a nonce":          {body: form(with(func(c map[string]any) { c["nonce"] = "n-1" }))},
		"without sid and sub":   {body: form(with(func(c map[string]any) { delete(c, "sid"); delete(c, "sub") }))},
		"without events member": {body: form(with(func(c map[string]any) { c["events"] = map[string]any{} }))},
		"without jti":           {body: form(with(func(c map[string]any) { delete(c, "jti") }))},
		"an access token":       {body: form(accessToken())},
		"an ID token":           {body: form(idToken())},
		"two logout_token":      {body: url.Values{"logout_token": {good, good}}.Encode()},
		"no logout_token":       {body: "token=" + good},
		"empty logout_token":    {body: "logout_token="},
		"oversized":             {body: form(good + strings.Repeat("A", maxLogoutBodyBytes))},
		"oversized, short Content-Length": {body: form(good) + "&x=" + strings.Repeat("A", maxLogoutBodyBytes),
			headers: map[string]string{"content-length": "100"}},
		"no Content-Length": {body: form(good), headers: map[string]string{"content-length": ""}},
		"chunked":           {body: form(good), headers: map[string]string{"transfer-encoding": "chunked"}},
		"JSON body":         {body: `{"logout_token":"` + good + `"}`, headers: map[string]string{"content-type": "application/json"}},
		"bad form encoding": {body: "logout_token=%zz"},
	}
	reasons := map[string]string{"another realm": keycloak.ReasonWrongIssuer, "another audience": keycloak.ReasonWrongAudience,
		"expired": keycloak.ReasonExpired, "too old": keycloak.ReasonTooOld, "alg none": keycloak.ReasonMalformed,
		"HS256, client secret": keycloak.ReasonMalformed, "with a nonce": keycloak.ReasonNonce,
		"without sid and sub": keycloak.ReasonNoSession, "without events member": keycloak.ReasonMissingEvents,
		"without jti": keycloak.ReasonNoJTI, "an access token": keycloak.ReasonWrongType, "an ID token": keycloak.ReasonWrongType}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			want := reasons[name]
			if want == "" {
				want = reasonLogoutBody
			}
			h := tc.headers
			if v, ok := h["content-length"]; ok && v == "" {
				h = nil
				r := runnertest.NewRequest(requestIDs.Add(1), f.logout.token, map[string]string{"content-type": "application/x-www-form-urlencoded"})
				r.MethodV, r.BodyV = http.MethodPost, []byte(tc.body)
				assertLogoutRefused(t, f.logout.doRequest(r), want)
				return
			}
			assertLogoutRefused(t, postForm(f.logout, tc.body, h), want)
		})
	}
	assert.Empty(t, f.revoker.revoked(), "nothing revoked")
	assert.Zero(t, f.plugin.logoutJTIs.len(), "nothing remembered")
}

func assertLogoutRefused(t *testing.T, w *httptest.ResponseRecorder, reason string) {
	t.Helper()
	assert.Equal(t, http.StatusBadRequest, w.Code, w.Body.String())
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
	assert.Equal(t, "invalid_request", body.Error)
	assert.Equal(t, reason, body.Description)
}

func TestBackchannelLogoutRefusesAReplay(t *testing.T) {
	f := newLogoutFixture(t, "", Deps{})
	tok := f.is.Sign(logoutClaims(f.is, "u-alice", "sid-1"))
	require.Equal(t, http.StatusOK, postLogout(f.logout, tok).Code)
	assertLogoutRefused(t, postLogout(f.logout, tok), reasonLogoutReplayed)
	assert.Len(t, f.revoker.revoked(), 1)

	// The record is the process's: a second route (or the same route
	// prepared again by APISIX) refuses it too.
	again := newRouteOf(t, f.plugin, fmt.Sprintf(`{"backchannel_logout":true,"issuer":%q,"audience":"apisix","leeway":"10s"}`, f.is.URL))
	assertLogoutRefused(t, postLogout(again, tok), reasonLogoutReplayed)
	assert.Len(t, f.revoker.revoked(), 1)
}

func TestBackchannelLogoutOnlyPost(t *testing.T) {
	f := newLogoutFixture(t, "", Deps{})
	r := runnertest.NewRequest(requestIDs.Add(1), f.logout.token, nil)
	w := f.logout.doRequest(r)
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
	assert.Equal(t, "POST", w.Header().Get("Allow"))
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
}

func TestBackchannelLogoutWithoutStoreIsMisconfigured(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, fmt.Sprintf(`{"backchannel_logout":true,"issuer":%q,"audience":"apisix"}`, is.URL))
	w := postLogout(rt, is.Sign(logoutClaims(is, "u", "s")))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
}

// A flood of forged tokens (right issuer, any key) costs a signature check
// each and stores nothing.
func TestForgedLogoutFloodStoresNothing(t *testing.T) {
	f := newLogoutFixture(t, "", Deps{})
	key := tokentest.NewKey(t)
	kid := f.is.Rotate() // the forger names a real kid
	for i := 0; i < 200; i++ {
		w := postLogout(f.logout, tokentest.SignWith(t, key, kid, logoutClaims(f.is, "u-alice", "sid-"+strconv.Itoa(i))))
		require.Equal(t, http.StatusBadRequest, w.Code)
	}
	assert.Empty(t, f.revoker.revoked())
	assert.Zero(t, f.plugin.logoutJTIs.len())
}

// With Redis, a token accepted by one runner is refused by another.
func TestBackchannelLogoutReplayRefusedAcrossTheFleet(t *testing.T) {
	redisURL := os.Getenv("REDIS_TEST_URL")
	if redisURL == "" {
		t.Skip("REDIS_TEST_URL is not set")
	}
	prefix := fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	newCache := func() *cache.Cache {
		c, err := cache.New(context.Background(), &cache.Options{RedisURL: redisURL, KeyPrefix: prefix,
			ValueSecret: []byte(strings.Repeat("s", 32))})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a := newLogoutFixture(t, "", Deps{Cache: newCache()})
	b := &logoutFixture{is: a.is, revoker: newRevoker(t)}
	b.plugin = New(Deps{Emitter: newEmitter(), Revocations: b.revoker, Cache: newCache()})
	b.logout = newRouteOf(t, b.plugin, fmt.Sprintf(`{"backchannel_logout":true,"issuer":%q,"audience":"apisix"}`, a.is.URL))

	tok := a.is.Sign(logoutClaims(a.is, "u-alice", "sid-1"))
	require.Equal(t, http.StatusOK, postLogout(a.logout, tok).Code)
	assertLogoutRefused(t, postLogout(b.logout, tok), reasonLogoutReplayed)
	assert.Empty(t, b.revoker.revoked())
}
