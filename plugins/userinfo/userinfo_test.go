package userinfo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"net/http/httptest"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

var requestIDs atomic.Uint32

// each test route gets its own conf token so route learning does not leak.
var tokens atomic.Uint32

func init() {
	keys, err := assertion.Generate()
	if err != nil {
		panic(err)
	}
	assertion.SetCurrent(keys)
	tokens.Store(1 << 20)
}

type route struct {
	t     *testing.T
	conf  any
	token uint32
}

func newRoute(t *testing.T, confJSON string) *route {
	t.Helper()
	v, err := (&Plugin{}).ParseConf([]byte(confJSON))
	require.NoError(t, err)
	require.NoError(t, v.(*Conf).Err())
	return &route{t: t, conf: v, token: tokens.Add(1)}
}

func (rt *route) do(headers map[string]string) (*httptest.ResponseRecorder, *runnertest.Request) {
	r := runnertest.NewRequest(requestIDs.Add(1), rt.token, headers)
	w := httptest.NewRecorder()
	(&Plugin{}).RequestFilter(rt.conf, w, r)
	return w, r
}

func userinfoHeader(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return base64.StdEncoding.EncodeToString(b)
}

func confFor(is *tokentest.Issuer, extra string) string {
	return fmt.Sprintf(`{"issuer":%q,"assertion":{"audience":"mitxonline","ttl":"60s"}%s}`, is.URL, extra)
}

func loggedIn(is *tokentest.Issuer, sub string, userinfo map[string]any) map[string]string {
	tok := is.Claims(sub)
	tok["email"] = userinfo["email"]
	return map[string]string{
		"x-userinfo":     userinfoHeader(userinfo),
		"x-access-token": is.Sign(tok),
	}
}

func verifyAssertion(t *testing.T, jws string) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	require.NoError(t, json.Unmarshal(assertion.Current().JWKS(), &set))
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

func TestForgedHeadersNeverReachUpstream(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	forged := userinfoHeader(map[string]any{"sub": "u-admin", "email": "root@example.org"})
	cases := map[string]map[string]string{
		"X_Userinfo on an anonymous request":    {"X_Userinfo": forged},
		"x_USERINFO on an anonymous request":    {"x_USERINFO": forged},
		"forged X-Identity-Assertion":           {"X-Identity-Assertion": "eyJhbGciOiJub25lIn0.e30."},
		"forged x_identity_assertion":           {"x_identity_assertion": "eyJhbGciOiJub25lIn0.e30."},
		"forged X-User-Id and X_User_Email":     {"X-User-Id": "u-admin", "X_User_Email": "root@example.org"},
		"forged X-User-Orgs-Source":             {"x-user-orgs-source": "keycloak"},
		"X_Access_Token with X_Userinfo":        {"X_Access_Token": is.Sign(is.Claims("u-admin")), "X_Userinfo": forged},
		"forged X_Userinfo beside a real login": mergeHeaders(loggedIn(is, "u-alice", map[string]any{"sub": "u-alice"}), map[string]string{"X_Userinfo": forged}),
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
	assert.JSONEq(t, `"m"`, string(got["nickname"]), "other claims pass untouched")
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

func TestIDTokenOfAnotherUserIsRemoved(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	h := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice"})
	h["x-id-token"] = userinfoHeader(map[string]any{"sub": "u-bob"})
	_, r := rt.do(h)
	assert.Empty(t, r.Header().Get("X-ID-Token"))
	h["x-id-token"] = userinfoHeader(map[string]any{"sub": "u-alice"})
	_, r = rt.do(h)
	assert.NotEmpty(t, r.Header().Get("X-ID-Token"))
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
	assert.Equal(t, assertion.Current().KeyID(), set.Keys[0].KeyID)
	assert.True(t, set.Keys[0].IsPublic(), "only public keys are published")

	r := runnertest.NewRequest(requestIDs.Add(1), rt.token, nil)
	r.MethodV = http.MethodPost
	w = httptest.NewRecorder()
	(&Plugin{}).RequestFilter(rt.conf, w, r)
	assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
}

// orgsync's side of the hand-off, played by the test: once a follower has
// taken a hand-off on a route, userinfo leaves emission (and signing) to it.
func TestHandsOffToAFollower(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	headers := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice", "organization": []string{"acme"}})

	_, r := rt.do(headers)
	h := identity.DefaultChains.Take(r)
	require.NotNil(t, h, "first request: emitted and handed off while the route is learned")
	assert.True(t, h.Emitted)

	before := testutilCount()
	_, r = rt.do(headers)
	assert.Empty(t, r.Header().Get("X-Identity-Assertion"), "the follower emits")
	h = identity.DefaultChains.Take(r)
	require.NotNil(t, h)
	assert.False(t, h.Emitted)
	h.Identity.Orgs = identity.Organizations{Shape: identity.ShapeMap, List: []identity.Organization{{Alias: "globex", ID: "org-2"}}}
	h.Identity.OrgsSource = "keycloak"
	require.NoError(t, h.Emitter.Emit(r, h.Identity))
	assert.Equal(t, before+1, testutilCount(), "one signature for the request")
	assert.Equal(t, "globex", r.Header().Get("X-User-Orgs"))
	assert.Equal(t, "keycloak", r.Header().Get("X-User-Orgs-Source"))
	claims := verifyAssertion(t, r.Header().Get("X-Identity-Assertion"))
	assert.Equal(t, map[string]any{"globex": map[string]any{"id": "org-2"}}, claims["organization"])
	ui, err := identity.DecodeUserinfo(r.Header().Get("X-Userinfo"), 0)
	require.NoError(t, err)
	assert.JSONEq(t, `{"globex":{"id":"org-2"}}`, string(ui["organization"]))
	_ = context.Background()
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
