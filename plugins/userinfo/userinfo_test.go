package userinfo

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"net/http/httptest"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

var requestIDs atomic.Uint32

var tokens atomic.Uint32

// testKeys sign every assertion of these tests; testPlugin is the plugin as
// main builds it, with those keys.
var (
	testKeys   = mustKeys()
	testPlugin = New(Deps{Emitter: newEmitter()})
)

// newEmitter is the emitter as main builds it, with the test keys.
func newEmitter() *emit.Emitter { return emit.New(emit.Options{Keys: testKeys}) }

func mustKeys() *assertion.KeyRing {
	keys, err := assertion.Generate()
	if err != nil {
		panic(err)
	}
	return keys
}

type route struct {
	t      *testing.T
	plugin *Plugin
	conf   any
	token  uint32
}

func newRoute(t *testing.T, confJSON string) *route {
	t.Helper()
	return newRouteOf(t, testPlugin, confJSON)
}

func newRouteOf(t *testing.T, p *Plugin, confJSON string) *route {
	t.Helper()
	v, err := p.ParseConf([]byte(confJSON))
	require.NoError(t, err)
	require.NoError(t, v.(*Conf).Err())
	return &route{t: t, plugin: p, conf: v, token: tokens.Add(1)}
}

func (rt *route) do(headers map[string]string) (*httptest.ResponseRecorder, *runnertest.Request) {
	r := runnertest.NewRequest(requestIDs.Add(1), rt.token, headers)
	return rt.doRequest(r), r
}

func (rt *route) doRequest(r *runnertest.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	rt.plugin.RequestFilter(rt.conf, w, r)
	return w
}

func userinfoHeader(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return base64.StdEncoding.EncodeToString(b)
}

func confFor(is *tokentest.Issuer, extra string) string {
	return fmt.Sprintf(`{"issuer":%q,"audience":"apisix","assertion":{"audience":"mitxonline","ttl":"60s"}%s}`, is.URL, extra)
}

// loggedIn gives the headers openid-connect sends for a user whose access
// token carries the same claims as userinfo (Keycloak's default mappers put
// them in both).
func loggedIn(is *tokentest.Issuer, sub string, userinfo map[string]any) map[string]string {
	tok := is.Claims(sub)
	for k, v := range userinfo {
		tok[k] = v
	}
	return map[string]string{
		"x-userinfo":     userinfoHeader(userinfo),
		"x-access-token": is.Sign(tok),
	}
}

func verifyAssertion(t *testing.T, jws string) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	require.NoError(t, json.Unmarshal(testKeys.JWKS(), &set))
	obj, err := jose.ParseSigned(jws, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	require.NoError(t, err)
	keys := set.Key(obj.Signatures[0].Header.KeyID)
	require.Len(t, keys, 1, "assertion kid is published")
	payload, err := obj.Verify(keys[0])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(payload, &claims))
	return claims
}

func TestLoggedInUserGetsTrustedHeadersAndAssertion(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	ui := map[string]any{"sub": "u-alice", "email": "alice@example.org", "name": "Alice", "preferred_username": "alice",
		"organization": map[string]any{"acme": map[string]any{"id": "org-1"}}}
	w, r := rt.do(loggedIn(is, "u-alice", ui))
	assert.Equal(t, 200, w.Code, w.Body.String())
	assert.Empty(t, w.Body.String(), "no direct answer: the request goes upstream")

	h := r.Header()
	assert.Equal(t, "u-alice", h.Get("X-User-Id"))
	assert.Equal(t, "alice@example.org", h.Get("X-User-Email"))
	assert.Equal(t, "acme", h.Get("X-User-Orgs"))
	claims := verifyAssertion(t, h.Get("X-Identity-Assertion"))
	assert.Equal(t, "u-alice", claims["sub"])
	assert.Equal(t, "mitxonline", claims["aud"])
	assert.Equal(t, "apisix-identity-runner", claims["iss"])
	assert.Equal(t, "alice", claims["preferred_username"])
	assert.Equal(t, map[string]any{"acme": map[string]any{"id": "org-1"}}, claims["organization"])
	assert.InDelta(t, 60, claims["exp"].(float64)-claims["iat"].(float64), 1)
	assert.NotEmpty(t, claims["jti"])

	got, err := identity.DecodeUserinfo(h.Get("X-Userinfo"), 0)
	require.NoError(t, err)
	assert.Equal(t, "u-alice", got.Subject())
}

func TestRefusals(t *testing.T) {
	is := tokentest.NewIssuer(t)
	other := tokentest.NewIssuer(t)
	alice := map[string]any{"sub": "u-alice", "email": "alice@example.org"}
	expired := is.Claims("u-alice")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()

	cases := []struct {
		name    string
		headers map[string]string
		status  int
		reason  string
	}{
		{"sub changed in X-Userinfo", map[string]string{
			"x-userinfo":     userinfoHeader(map[string]any{"sub": "u-bob"}),
			"x-access-token": is.Sign(is.Claims("u-alice"))}, 401, ReasonSubjectMismatch},
		{"expired token", map[string]string{"x-userinfo": userinfoHeader(alice), "x-access-token": is.Sign(expired)}, 401, "token_expired"},
		{"token from another issuer", map[string]string{"x-userinfo": userinfoHeader(alice),
			"x-access-token": is.Sign(other.Claims("u-alice"))}, 401, "token_wrong_issuer"},
		{"token signed by an unknown key", map[string]string{"x-userinfo": userinfoHeader(alice),
			"x-access-token": tokentest.SignWith(t, tokentest.NewKey(t), "rogue", is.Claims("u-alice"))}, 401, "token_unknown_key"},
		{"malformed base64", map[string]string{"x-userinfo": "%%%not-base64", "x-access-token": is.Sign(is.Claims("u-alice"))}, 401, ReasonMalformedUserinfo},
		{"malformed JSON", map[string]string{"x-userinfo": base64.StdEncoding.EncodeToString([]byte(`{"sub":`)),
			"x-access-token": is.Sign(is.Claims("u-alice"))}, 401, ReasonMalformedUserinfo},
		{"wrong claim type", map[string]string{"x-userinfo": userinfoHeader(map[string]any{"sub": "u-alice", "organization": 7}),
			"x-access-token": is.Sign(is.Claims("u-alice"))}, 401, ReasonMalformedUserinfo},
		{"token of another client", map[string]string{"x-userinfo": userinfoHeader(alice),
			"x-access-token": is.Sign(otherClient(is, "u-alice"))}, 401, "token_wrong_audience"},
		{"userinfo without token", map[string]string{"x-userinfo": userinfoHeader(alice)}, 401, ReasonMissingToken},
		{"huge userinfo", map[string]string{"x-userinfo": userinfoHeader(map[string]any{"sub": "u-alice", "pad": string(make([]byte, 64<<10))}),
			"x-access-token": is.Sign(is.Claims("u-alice"))}, 401, ReasonMalformedUserinfo},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRoute(t, confFor(is, ""))
			w, _ := rt.do(tc.headers)
			assert.Equal(t, tc.status, w.Code)
			var body map[string]string
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), w.Body.String())
			assert.Equal(t, tc.reason, body["reason"])

			anon := newRoute(t, confFor(is, `,"on_invalid":"anonymous"`))
			w, r := anon.do(tc.headers)
			assert.Equal(t, 200, w.Code, "anonymous: passed on")
			for _, name := range []string{"X-Userinfo", "X-Access-Token", "X-User-Id", "X-Identity-Assertion"} {
				assert.Empty(t, r.Header().Get(name), "anonymous request must carry no %s", name)
			}
		})
	}
}

// otherClient is sub's access token as Keycloak issues it to another client
// of the realm: the same issuer and keys, azp naming that client, aud the
// account console's.
func otherClient(is *tokentest.Issuer, sub string) map[string]any {
	c := is.Claims(sub)
	c["azp"] = "other-app"
	c["aud"] = "account"
	return c
}

// A token of another client of the realm passes only on a route that says
// "any_audience": true, and what it proved there is not reused on a route
// that checks the client (the proven-login cache is keyed by audience too).
func TestTokenOfAnotherClient(t *testing.T) {
	is := tokentest.NewIssuer(t)
	alice := map[string]any{"sub": "u-alice", "email": "alice@example.org"}
	h := map[string]string{"x-userinfo": userinfoHeader(alice), "x-access-token": is.Sign(otherClient(is, "u-alice"))}
	bearer := map[string]string{"x-access-token": h["x-access-token"]}

	anyClient := newRoute(t, fmt.Sprintf(`{"issuer":%q,"any_audience":true}`, is.URL))
	for _, headers := range []map[string]string{h, bearer} {
		w, r := anyClient.do(headers)
		require.Equal(t, 200, w.Code, w.Body.String())
		assert.Equal(t, "u-alice", r.Header().Get("X-User-Id"))
	}

	for name, conf := range map[string]string{
		"the apisix client":                  confFor(is, ""),
		"a third client":                     fmt.Sprintf(`{"issuer":%q,"audience":"billing"}`, is.URL),
		"require_user on an anonymous route": fmt.Sprintf(`{"issuer":%q,"audience":"apisix","on_invalid":"anonymous","require_user":true}`, is.URL),
	} {
		t.Run(name, func(t *testing.T) {
			rt := newRoute(t, conf)
			for _, headers := range []map[string]string{h, bearer} {
				w, r := rt.do(headers)
				assert.Equal(t, 401, w.Code, w.Body.String())
				assert.Contains(t, w.Body.String(), "token_wrong_audience")
				assert.Empty(t, r.Header().Get("X-User-Id"))
			}
		})
	}

	// A route that names no client and does not opt out lets nobody in.
	captureLogs(t)
	v, err := testPlugin.ParseConf([]byte(fmt.Sprintf(`{"issuer":%q}`, is.URL)))
	require.NoError(t, err)
	silent := &route{t: t, plugin: testPlugin, conf: v, token: tokens.Add(1)}
	for _, headers := range []map[string]string{h, bearer} {
		w, r := silent.do(headers)
		assert.Equal(t, 500, w.Code, w.Body.String())
		assert.Empty(t, r.Header().Get("X-User-Id"))
	}

	// The client named in aud (an audience mapper) passes as well as azp.
	withAud := otherClient(is, "u-alice")
	withAud["aud"] = []string{"account", "apisix"}
	w, _ := newRoute(t, confFor(is, "")).do(map[string]string{"x-access-token": is.Sign(withAud)})
	assert.Equal(t, 200, w.Code, w.Body.String())
}

func TestForgedHeadersNeverReachUpstream(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	forged := userinfoHeader(map[string]any{"sub": "u-admin", "email": "root@example.org"})
	cases := map[string]map[string]string{
		"X_Userinfo on an anonymous request": {"X_Userinfo": forged},
		"x_USERINFO on an anonymous request": {"x_USERINFO": forged},
		"forged X-Identity-Assertion":        {"X-Identity-Assertion": "eyJhbGciOiJub25lIn0.e30."},
		"forged x_identity_assertion":        {"x_identity_assertion": "eyJhbGciOiJub25lIn0.e30."},
		"forged X-User-Id and X_User_Email":  {"X-User-Id": "u-admin", "X_User_Email": "root@example.org"},
		"forged X-User-Orgs-Source":          {"x-user-orgs-source": "keycloak"},
		"X_Access_Token with X_Userinfo":     {"X_Access_Token": is.Sign(is.Claims("u-admin")), "X_Userinfo": forged},
	}
	for name, headers := range cases {
		t.Run(name, func(t *testing.T) {
			w, r := rt.do(headers)
			require.Equal(t, 200, w.Code, w.Body.String())
			for k, v := range r.Header().View() {
				norm := identity.NormalizeName(k)
				assert.NotContains(t, v, forged, "forged userinfo survived as %s", k)
				if norm == "x-identity-assertion" {
					verifyAssertion(t, v[0]) // only ours, which verifies
				}
				assert.NotEqual(t, "u-admin", r.Header().Get("X-User-Id"))
				assert.NotEqual(t, "keycloak", r.Header().Get("X-User-Orgs-Source"))
			}
		})
	}
}

func mergeHeaders(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func TestTokenClaimsWinOverUserinfo(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	tok := is.Claims("u-mallory")
	tok["email"] = "mallory@example.org"
	w, r := rt.do(map[string]string{
		"x-userinfo":     userinfoHeader(map[string]any{"sub": "u-mallory", "email": "ceo@example.org", "nickname": "m"}),
		"x-access-token": is.Sign(tok),
	})
	require.Equal(t, 200, w.Code)
	assert.Equal(t, "mallory@example.org", r.Header().Get("X-User-Email"))
	got, err := identity.DecodeUserinfo(r.Header().Get("X-Userinfo"), 0)
	require.NoError(t, err)
	email, _ := got.String("email")
	assert.Equal(t, "mallory@example.org", email)
	_, kept := got["nickname"]
	assert.False(t, kept, "a claim the token does not carry is not passed on")
}

func TestNoIdentity(t *testing.T) {
	is := tokentest.NewIssuer(t)
	w, _ := newRoute(t, confFor(is, "")).do(map[string]string{"accept": "text/html"})
	assert.Equal(t, 200, w.Code, "anonymous passes by default")
	w, _ = newRoute(t, confFor(is, `,"require_user":true`)).do(map[string]string{"accept": "text/html"})
	assert.Equal(t, 401, w.Code)
	assert.Contains(t, w.Body.String(), ReasonNoIdentity)
}

func TestBearerTokenWithoutUserinfo(t *testing.T) {
	is := tokentest.NewIssuer(t)
	tok := is.Claims("u-svc")
	tok["organization"] = []string{"acme"}
	w, r := newRoute(t, confFor(is, "")).do(map[string]string{"x-access-token": is.Sign(tok)})
	require.Equal(t, 200, w.Code)
	assert.Equal(t, "u-svc", r.Header().Get("X-User-Id"))
	assert.Equal(t, "acme", r.Header().Get("X-User-Orgs"))
}

func TestVerifyTokenFalseTrustsUserinfo(t *testing.T) {
	rt := newRoute(t, `{"verify_token":false}`)
	w, r := rt.do(map[string]string{"x-userinfo": userinfoHeader(map[string]any{"sub": "u1", "organization": []string{"a", "b"}})})
	require.Equal(t, 200, w.Code)
	assert.Equal(t, "a,b", r.Header().Get("X-User-Orgs"))
	// Still strips the underscore spelling.
	w, r = rt.do(map[string]string{"x_userinfo": userinfoHeader(map[string]any{"sub": "u1"})})
	require.Equal(t, 200, w.Code)
	assert.Empty(t, r.Header().Get("X-User-Id"))
}

func idToken(is *tokentest.Issuer, sub, client string) string {
	c := is.Claims(sub)
	c["typ"] = "ID"
	c["aud"] = client
	c["name"] = "ID " + sub
	return is.Sign(c)
}

// X-ID-Token is unsigned base64 JSON: it reaches the upstream only as the
// claims of a verified X-Raw-ID-Token of the same user and client.
func TestIDTokenPassesOnlyWhenVerified(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	forged := userinfoHeader(map[string]any{"sub": "u-alice", "email_verified": true, "name": "Forged"})
	cases := []struct {
		name     string
		raw      string
		wantKept bool
	}{
		{"no raw ID token: the unsigned one is removed", "", false},
		{"raw ID token of the same user and client", idToken(is, "u-alice", "apisix"), true},
		{"raw ID token of another user", idToken(is, "u-bob", "apisix"), false},
		{"raw ID token of another client", idToken(is, "u-alice", "other-client"), false},
		{"raw ID token of another issuer", idToken(tokentest.NewIssuer(t), "u-alice", "apisix"), false},
		{"an access token as raw ID token", is.Sign(is.Claims("u-alice")), false},
		{"garbage", "not.a.token", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice"})
			h["x-id-token"] = forged
			if tc.raw != "" {
				h["x-raw-id-token"] = tc.raw
			}
			w, r := rt.do(h)
			require.Equal(t, 200, w.Code, w.Body.String())
			got := r.Header().Get("X-ID-Token")
			if !tc.wantKept {
				assert.Empty(t, got)
				assert.Empty(t, r.Header().Get("X-Raw-ID-Token"))
				return
			}
			assert.NotEqual(t, forged, got, "rewritten from the verified token")
			claims, err := identity.DecodeUserinfo(got, 0)
			require.NoError(t, err)
			name, _ := claims.String("name")
			assert.Equal(t, "ID u-alice", name)
			assert.Equal(t, tc.raw, r.Header().Get("X-Raw-ID-Token"))
		})
	}
}

func TestClaimHeaderValuesAreSanitized(t *testing.T) {
	rt := newRoute(t, `{"verify_token":false,"claim_headers":{"X-User-Name":"name","X-Groups":"groups","X-Level":"level"}}`)
	_, r := rt.do(map[string]string{"x-userinfo": userinfoHeader(map[string]any{
		"sub": "u1", "name": "Eve\r\nX-Admin: true", "groups": []string{"/staff", "/ops"}, "level": 3})})
	assert.Equal(t, "Eve  X-Admin: true", r.Header().Get("X-User-Name"))
	assert.Equal(t, "/staff,/ops", r.Header().Get("X-Groups"))
	assert.Equal(t, "3", r.Header().Get("X-Level"))
}

func TestJWKSRoute(t *testing.T) {
	rt := newRoute(t, `{"jwks":true}`)
	w, _ := rt.do(nil)
	assert.Equal(t, 200, w.Code)
	var set jose.JSONWebKeySet
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &set))
	require.NotEmpty(t, set.Keys)
	assert.Equal(t, testKeys.KeyID(), set.Keys[0].KeyID)
	assert.True(t, set.Keys[0].IsPublic(), "only public keys are published")

	r := runnertest.NewRequest(requestIDs.Add(1), rt.token, nil)
	r.MethodV = http.MethodPost
	w = rt.doRequest(r)
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
}

// orgsync's side, played by the test: the proof userinfo attaches to the
// request carries the identity and the route's emit settings, and the shared
// emitter writes a refreshed identity with its own organizations and source.
func TestProofForTheNextPlugin(t *testing.T) {
	is := tokentest.NewIssuer(t)
	em := newEmitter()
	rt := newRouteOf(t, New(Deps{Emitter: em}), confFor(is, ""))
	headers := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice", "organization": []string{"acme"}})

	_, r := rt.do(headers)
	proof, ok := emit.ProofOf(r)
	require.True(t, ok, "userinfo attaches what it proved")
	assert.Equal(t, "u-alice", proof.Identity.Subject())
	assert.True(t, proof.Identity.Verified())
	assert.Equal(t, is.URL, proof.Identity.Issuer())
	assert.Equal(t, "acme", r.Header().Get("X-User-Orgs"), "userinfo emits the token's view itself")

	refreshed := proof.Identity.WithOrgs(identity.Organizations{Shape: identity.ShapeMap,
		List: []identity.Organization{{Alias: "globex", ID: "org-2"}}})
	ref := emit.Refresh{Settings: "test", Source: "keycloak", Value: []byte("v1")}
	assert.False(t, em.Replay(r.Header(), proof.Identity, proof.Route, ref), "nothing rendered for this refresh yet")
	require.NoError(t, em.Emit(r.Header(), refreshed, proof.Route, ref))
	assert.Equal(t, "globex", r.Header().Get("X-User-Orgs"))
	assert.Equal(t, "keycloak", r.Header().Get("X-User-Orgs-Source"))
	claims := verifyAssertion(t, r.Header().Get("X-Identity-Assertion"))
	assert.Equal(t, map[string]any{"globex": map[string]any{"id": "org-2"}}, claims["organization"])
	assert.Equal(t, "keycloak", claims["organization_source"])
	ui, err := identity.DecodeUserinfo(r.Header().Get("X-Userinfo"), 0)
	require.NoError(t, err)
	assert.JSONEq(t, `{"globex":{"id":"org-2"}}`, string(ui["organization"]))
	assert.Equal(t, identity.ShapeList, proof.Identity.OrgsShape(), "the proof's identity is not changed by a refresh")

	// The next request of the same login replays both renderings.
	_, r2 := rt.do(headers)
	again, ok := emit.ProofOf(r2)
	require.True(t, ok)
	require.True(t, em.Replay(r2.Header(), again.Identity, again.Route, ref))
	assert.Equal(t, "globex", r2.Header().Get("X-User-Orgs"))
	assert.Equal(t, r.Header().Get("X-Identity-Assertion"), r2.Header().Get("X-Identity-Assertion"))

	// Another value, source or setting: no replay.
	for _, other := range []emit.Refresh{{Settings: "test", Source: "keycloak", Value: []byte("v2")},
		{Settings: "test", Source: "cache", Value: []byte("v1")}, {Settings: "other", Source: "keycloak", Value: []byte("v1")}} {
		assert.False(t, em.Replay(r2.Header(), again.Identity, again.Route, other), "%+v", other)
	}
}

// Nothing a client sends can stand for the proof: without userinfo on the
// request there is none, whatever the headers say.
func TestNoProofWithoutVerification(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, `,"on_invalid":"anonymous"`))
	_, r := rt.do(map[string]string{"x-userinfo": userinfoHeader(map[string]any{"sub": "u-admin"}),
		"x-access-token": "forged"})
	_, ok := emit.ProofOf(r)
	assert.False(t, ok)
}

// APISIX gives the runner only the first 100 headers: a request with that
// many may hide a forged header the plugin cannot see, so it is refused.
func TestHundredHeadersAreRefused(t *testing.T) {
	rt := newRoute(t, `{"verify_token":false,"on_invalid":"anonymous"}`)
	h := map[string]string{}
	for i := 0; i < 100; i++ {
		h[fmt.Sprintf("x-filler-%d", i)] = "v"
	}
	w, _ := rt.do(h)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, w.Code)
	assert.Contains(t, w.Body.String(), ReasonTooManyHeaders)
	delete(h, "x-filler-0")
	w, _ = rt.do(h)
	assert.Equal(t, 200, w.Code, "99 headers pass")
}

// The per-token session cache must not outlive the token: once it expires
// (plus leeway) the same headers are refused.
func TestCachedSessionStillExpires(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, `,"leeway":"1s"`))
	claims := is.Claims("u-alice")
	claims["exp"] = time.Now().Add(time.Second).Unix()
	headers := map[string]string{"x-userinfo": userinfoHeader(map[string]any{"sub": "u-alice"}), "x-access-token": is.Sign(claims)}
	w, _ := rt.do(headers)
	require.Equal(t, 200, w.Code)
	w, _ = rt.do(headers)
	require.Equal(t, 200, w.Code, "served from the session cache")
	time.Sleep(3 * time.Second)
	w, _ = rt.do(headers)
	assert.Equal(t, 401, w.Code)
	assert.Contains(t, w.Body.String(), "token_expired")
}

// A cached session is bound to both headers: the same token with another
// X-Userinfo is checked again.
func TestCachedSessionIsBoundToBothHeaders(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	token := is.Sign(is.Claims("u-alice"))
	w, _ := rt.do(map[string]string{"x-userinfo": userinfoHeader(map[string]any{"sub": "u-alice"}), "x-access-token": token})
	require.Equal(t, 200, w.Code)
	w, _ = rt.do(map[string]string{"x-userinfo": userinfoHeader(map[string]any{"sub": "u-bob"}), "x-access-token": token})
	assert.Equal(t, 401, w.Code)
	assert.Contains(t, w.Body.String(), ReasonSubjectMismatch)
}

// A repeated identity header is refused: an upstream could read any of the
// values, or all of them joined ("acme,globex").
func TestRepeatedIdentityHeaderIsRefused(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, `,"claim_headers":{"X-User-Id":"sub","X-User-Orgs":"organization","X-Tenant":"tenant"}`))
	login := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice", "organization": []string{"acme"}})
	for _, extra := range [][2]string{
		{"x_userinfo", userinfoHeader(map[string]any{"sub": "u-admin"})},
		{"X-Access-Token", "second"},
		{"X_USER_ORGS", "globex"},
		{"x-tenant", "evil"},
		{"X-Identity-Assertion", "x"},
	} {
		t.Run(extra[0], func(t *testing.T) {
			r := runnertest.NewRequest(requestIDs.Add(1), rt.token, login)
			first := extra[0]
			r.Hdr.View().Add(first, extra[1])
			r.Hdr.View().Add(identity.NormalizeName(first), extra[1]+"-again")
			w := rt.doRequest(r)
			assert.Equal(t, http.StatusBadRequest, w.Code)
			assert.JSONEq(t, `{"error":"Bad Request","reason":"duplicate_identity_header"}`, w.Body.String())
		})
	}
	// The same name in two cases, as APISIX hands it over (one name, two values).
	r := runnertest.NewRequest(requestIDs.Add(1), rt.token, login)
	r.Hdr.View().Add("X-User-Orgs", "acme")
	r.Hdr.View().Add("x-user-orgs", "globex")
	w := rt.doRequest(r)
	assert.Equal(t, http.StatusBadRequest, w.Code)
}

// Whatever the config names, a client's copy of an emitted header never
// reaches the upstream: the default names, a custom claim header and a custom
// assertion header, in any spelling, on anonymous and logged-in requests.
func TestForgedEmittedHeadersAreStrippedForEveryConfig(t *testing.T) {
	is := tokentest.NewIssuer(t)
	configs := map[string]string{
		"default":   confFor(is, ""),
		"custom":    fmt.Sprintf(`{"issuer":%q,"audience":"apisix","claim_headers":{"X-Tenant-Id":"sub","X-Mail":"email"},"assertion":{"audience":"a","header":"X-Gateway-JWT"}}`, is.URL),
		"no claims": fmt.Sprintf(`{"issuer":%q,"audience":"apisix","claim_headers":{}}`, is.URL),
	}
	defaults := []string{"X-User-Id", "x_user_id", "X-User-Email", "X-USER-ORGS", "X-User-Orgs-Source",
		"X-Identity-Assertion", "x_identity_assertion"}
	custom := map[string][]string{"custom": {"X-Tenant-Id", "x_tenant_id", "X-Mail", "X-Gateway-JWT", "x_gateway_jwt"}}
	for cname, cj := range configs {
		rt := newRoute(t, cj)
		forgedNames := append(append([]string{}, defaults...), custom[cname]...)
		for _, logged := range []bool{false, true} {
			for _, name := range forgedNames {
				t.Run(fmt.Sprintf("%s/logged_in=%v/%s", cname, logged, name), func(t *testing.T) {
					h := map[string]string{}
					if logged {
						h = loggedIn(is, "u-alice", map[string]any{"sub": "u-alice", "email": "alice@example.org"})
					}
					h[name] = "FORGED"
					w, r := rt.do(h)
					require.Equal(t, 200, w.Code, w.Body.String())
					for k, vs := range r.Header().View() {
						assert.NotContains(t, vs, "FORGED", "forged %s survived as %s", name, k)
					}
				})
			}
		}
	}
}

// Claims the token does not carry cannot be smuggled in through X-Userinfo:
// a client with its own valid token and a forged X-Userinfo naming itself
// gets none of the forged claims into a trusted output.
func TestForgedClaimsAreNotTrusted(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, `,"claim_headers":{"X-User-Id":"sub","X-User-Email":"email","X-User-Orgs":"organization","X-Groups":"groups","X-Name":"name"}`))
	forgedClaims := map[string]any{"sub": "u-mallory", "email": "ceo@example.org", "name": "The CEO",
		"preferred_username": "ceo", "organization": map[string]any{"globex": map[string]any{"id": "org-2"}},
		"groups": []string{"/admins"}, "realm_access": map[string]any{"roles": []string{"admin"}}}
	tok := is.Claims("u-mallory") // the token carries none of them
	w, r := rt.do(map[string]string{"x-userinfo": userinfoHeader(forgedClaims), "x-access-token": is.Sign(tok)})
	require.Equal(t, 200, w.Code, w.Body.String())
	h := r.Header()
	assert.Equal(t, "u-mallory", h.Get("X-User-Id"))
	for _, name := range []string{"X-User-Email", "X-User-Orgs", "X-Groups", "X-Name"} {
		assert.Empty(t, h.Get(name), name)
	}
	ui, err := identity.DecodeUserinfo(h.Get("X-Userinfo"), 0)
	require.NoError(t, err)
	for name := range forgedClaims {
		if name != "sub" {
			_, ok := ui[name]
			assert.False(t, ok, "X-Userinfo carries the forged %s", name)
		}
	}
	claims := verifyAssertion(t, h.Get("X-Identity-Assertion"))
	for _, name := range []string{"email", "name", "preferred_username", "groups", "roles"} {
		_, ok := claims[name]
		assert.False(t, ok, "the assertion signs the forged %s", name)
	}
	assert.Equal(t, map[string]any{}, claims["organization"])
	assert.Equal(t, "token", claims["organization_source"])
}

// One signature per identity: requests of one login reuse the assertion
// until half its ttl; a change of claims signs a new one at once.
func TestSignsOncePerIdentity(t *testing.T) {
	is := tokentest.NewIssuer(t)
	em := newEmitter()
	rt := newRouteOf(t, New(Deps{Emitter: em}), confFor(is, ""))
	headers := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice", "organization": []string{"acme"}})
	before := em.Signed()
	_, first := rt.do(headers)
	for i := 0; i < 20; i++ {
		_, r := rt.do(headers)
		assert.Equal(t, first.Header().Get("X-Identity-Assertion"), r.Header().Get("X-Identity-Assertion"))
	}
	assert.Equal(t, before+1, em.Signed(), "21 requests, one signature")

	// A new token with other organizations: a new assertion at once.
	changed := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice", "organization": []string{"acme", "globex"}})
	_, r := rt.do(changed)
	assert.NotEqual(t, first.Header().Get("X-Identity-Assertion"), r.Header().Get("X-Identity-Assertion"))
	claims := verifyAssertion(t, r.Header().Get("X-Identity-Assertion"))
	assert.Len(t, claims["organization"], 2)

	// A renewed token with the same claims reuses the assertion (it is the
	// same identity).
	renewed := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice", "organization": []string{"acme"}})
	renewed["x-access-token"] = is.Sign(mergeClaims(is.Claims("u-alice"), map[string]any{"organization": []string{"acme"}, "jti": "other"}))
	_, r = rt.do(renewed)
	assert.Equal(t, first.Header().Get("X-Identity-Assertion"), r.Header().Get("X-Identity-Assertion"))
}

func mergeClaims(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// One valid token and many distinct X-Userinfo values (each ~31 KB) must not
// grow the process: the reuse cache is bounded in bytes.
func TestSessionCacheBoundedInBytes(t *testing.T) {
	is := tokentest.NewIssuer(t)
	const budget = 2 << 20
	p := New(Deps{Emitter: newEmitter(), SessionBytes: budget})
	rt := newRouteOf(t, p, confFor(is, ""))
	token := is.Sign(is.Claims("u-mallory"))
	pad := strings.Repeat("x", 23<<10)
	for i := 0; i < 400; i++ {
		ui := userinfoHeader(map[string]any{"sub": "u-mallory", "pad": pad, "n": i})
		w, _ := rt.do(map[string]string{"x-userinfo": ui, "x-access-token": token})
		require.Equal(t, 200, w.Code, w.Body.String())
	}
	assert.LessOrEqual(t, p.sessions.cache.Bytes(), int64(budget))
	assert.Greater(t, p.sessions.cache.Len(), 1)
}

// The client learns why it was refused, never the deployment's internals
// (a key set URL) nor a token.
func TestRefusalBodiesCarryOnlyTheReason(t *testing.T) {
	is := tokentest.NewIssuer(t)
	is.SetDown(true)
	logs := captureLogs(t)
	rt := newRoute(t, confFor(is, ""))
	h := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice"})
	w, _ := rt.do(h)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.JSONEq(t, `{"error":"Service Unavailable","reason":"token_keys_unavailable"}`, w.Body.String())
	assert.NotContains(t, w.Body.String(), is.URL)
	assert.NotContains(t, logs.String(), h["x-access-token"], "no token in the log")
}
