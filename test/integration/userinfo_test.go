//go:build integration

package integration

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

func reasonOf(t *testing.T, res *apisix.Result) string {
	t.Helper()
	var body map[string]string
	require.NoError(t, json.Unmarshal(res.Body, &body), "body: %s", res.Body)
	return body["reason"]
}

func TestLoggedInUserReachesUpstreamWithVerifiableAssertion(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "ui")
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""))

	res := r.do(t, route, headersOf(sess))
	require.Equal(t, 200, res.Status, "body: %s", res.Body)
	require.True(t, res.Upstream)
	up := res.UpstreamHeader
	assert.Equal(t, user.ID, up.Get("X-User-Id"))
	assert.Equal(t, user.Email, up.Get("X-User-Email"))
	claims := verifyAssertion(t, r, up.Get("X-Identity-Assertion"))
	assert.Equal(t, user.ID, claims["sub"])
	assert.Equal(t, "mitxonline", claims["aud"])
	assert.Equal(t, user.Email, claims["email"])
	assert.Equal(t, user.ID, decodeUserinfo(t, up.Get("X-Userinfo"))["sub"])
	assert.Equal(t, sess.AccessToken, up.Get("X-Access-Token"), "the verified token is passed on")
}

func TestForgedIdentityIsRefusedOrStripped(t *testing.T) {
	s := kctest.Env(t)
	r := startRunner(t, baseEnv(t, s.URL))
	alice := kctest.CreateUser(t, "alice")
	bob := kctest.CreateUser(t, "bob")
	sess := kctest.Login(t, alice.Username, alice.Password)
	route := newRoute(userinfoConf(t, ""))

	t.Run("sub changed in X-Userinfo", func(t *testing.T) {
		ui := sess.UserinfoMap(t)
		ui["sub"] = bob.ID
		b, _ := json.Marshal(ui)
		res := r.do(t, route, map[string]string{"x-userinfo": base64.StdEncoding.EncodeToString(b), "x-access-token": sess.AccessToken})
		assert.Equal(t, 401, res.Status)
		assert.False(t, res.Upstream)
		assert.Equal(t, "sub_mismatch", reasonOf(t, res))
	})

	forged := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":%q,"email":"root@example.org"}`, bob.ID)))
	for _, name := range []string{"X_Userinfo", "x-USERINFO", "x_userinfo"} {
		t.Run("forged "+name+" never reaches the upstream", func(t *testing.T) {
			h := headersOf(sess)
			h[name] = forged
			if strings.EqualFold(name, "x-userinfo") {
				// The hyphenated name overwrites openid-connect's on a pass
				// route: without a matching token it must be refused.
				h = map[string]string{name: forged}
			}
			res := r.do(t, route, h)
			if res.Upstream {
				for k, v := range res.UpstreamHeader {
					assert.NotContains(t, v, forged, "forged userinfo reached the upstream as %s", k)
				}
				assert.NotEqual(t, bob.ID, res.UpstreamHeader.Get("X-User-Id"))
			} else if strings.EqualFold(name, "x-userinfo") {
				assert.Equal(t, 401, res.Status, "a lone forged X-Userinfo has no token")
			} else {
				// Beside openid-connect's X-Userinfo, a second spelling is a
				// repeated identity header.
				assert.Equal(t, 400, res.Status)
				assert.Equal(t, "duplicate_identity_header", reasonOf(t, res))
			}
		})
	}

	t.Run("forged X-Identity-Assertion never reaches the upstream", func(t *testing.T) {
		fake := "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+bob.ID+`"}`)) + "."
		for _, name := range []string{"X-Identity-Assertion", "x_identity_assertion"} {
			res := r.do(t, route, map[string]string{name: fake})
			require.True(t, res.Upstream, "anonymous request passes")
			for k, v := range res.UpstreamHeader {
				assert.NotContains(t, v, fake, "forged assertion reached the upstream as %s", k)
			}
		}
	})
}

func TestInvalidTokensGetTheConfiguredOutcome(t *testing.T) {
	s := kctest.Env(t)
	r := startRunner(t, baseEnv(t, s.URL))
	user := kctest.CreateUser(t, "tok")
	sess := kctest.Login(t, user.Username, user.Password)
	short := shortLivedLogin(t, user)
	masterToken := kctest.AdminToken(t)
	rogueKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rogue := signRogue(t, rogueKey, map[string]any{"iss": s.Issuer, "sub": user.ID, "typ": "Bearer",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	time.Sleep(2500 * time.Millisecond) // the short token (1s lifespan) expires; the route's leeway is 1s

	cases := []struct {
		name    string
		headers map[string]string
		reason  string
	}{
		{"expired token", map[string]string{"x-userinfo": short.userinfo, "x-access-token": short.token}, "token_expired"},
		{"token from another issuer", map[string]string{"x-userinfo": sess.UserinfoHeader(), "x-access-token": masterToken}, "token_wrong_issuer"},
		{"token signed by an unknown key", map[string]string{"x-userinfo": sess.UserinfoHeader(), "x-access-token": rogue}, "token_unknown_key"},
		{"malformed base64", map[string]string{"x-userinfo": "!!not base64!!", "x-access-token": sess.AccessToken}, "userinfo_malformed"},
		{"malformed JSON", map[string]string{"x-userinfo": base64.StdEncoding.EncodeToString([]byte(`{"sub":`)), "x-access-token": sess.AccessToken}, "userinfo_malformed"},
		{"wrong JSON types", map[string]string{"x-userinfo": base64.StdEncoding.EncodeToString([]byte(`{"sub":42}`)), "x-access-token": sess.AccessToken}, "userinfo_malformed"},
	}
	reject := newRoute(userinfoConf(t, `,"leeway":"1s"`))
	anonymous := newRoute(userinfoConf(t, `,"leeway":"1s","on_invalid":"anonymous"`))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := r.do(t, reject, tc.headers)
			assert.Equal(t, 401, res.Status, "body %s", res.Body)
			assert.False(t, res.Upstream)
			assert.Equal(t, tc.reason, reasonOf(t, res))

			res = r.do(t, anonymous, tc.headers)
			require.True(t, res.Upstream, "anonymous: passed on")
			for _, h := range []string{"X-Userinfo", "X-Access-Token", "X-User-Id", "X-Identity-Assertion"} {
				assert.Empty(t, res.UpstreamHeader.Get(h), "%s must be gone", h)
			}
		})
	}
	require.NotContains(t, r.Output(), sess.AccessToken, "tokens never reach the log")
}

func TestBadConfigAnswers500OnEveryRequest(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "cfg")
	sess := kctest.Login(t, user.Username, user.Password)
	for _, conf := range []apisix.PluginConf{
		{Name: "userinfo", Value: fmt.Sprintf(`{"issuer":%q,"audience":"apisix","on_invalid":"allow"}`, kctest.Env(t).Issuer)},
		{Name: "userinfo", Value: fmt.Sprintf(`{"issuer":%q,"audience":"apisix","verfy_token":false}`, kctest.Env(t).Issuer)},
		{Name: "userinfo", Value: fmt.Sprintf(`{"issuer":%q}`, kctest.Env(t).Issuer)},
		{Name: "userinfo", Value: fmt.Sprintf(`{"issuer":%q,"audience":""}`, kctest.Env(t).Issuer)},
		{Name: "orgsync", Value: `{"fresh_ttl":"1m","stale_ttl":"10s"}`},
	} {
		route := newRoute(conf)
		for i := 0; i < 3; i++ {
			res := r.do(t, route, headersOf(sess))
			assert.Equal(t, 500, res.Status)
			assert.False(t, res.Upstream)
			assert.Equal(t, "misconfigured", reasonOf(t, res))
		}
	}
	out := r.Output()
	assert.Contains(t, out, `unknown key \"verfy_token\"`, "the bad key is named in the log")
	assert.Contains(t, out, `\"audience\" is required`, "the bad key is named in the log")
	assert.Contains(t, out, "stale_ttl", "the bad key is named in the log")
}

// shortLivedLogin logs user in through a client whose tokens live one
// second, to get a real Keycloak token that expires during the test.
type shortSession struct{ token, userinfo, client string }

func shortLivedLogin(t *testing.T, user *kctest.TestUser) shortSession {
	t.Helper()
	clientID := fmt.Sprintf("short-%d", time.Now().UnixNano())
	kctest.CreateClient(t, map[string]any{
		"clientId": clientID, "publicClient": false, "secret": "short-secret", "directAccessGrantsEnabled": true,
		"standardFlowEnabled": false, "attributes": map[string]string{"access.token.lifespan": "1"},
	})
	sess := kctest.PasswordGrant(t, clientID, "short-secret", user.Username, user.Password, "openid")
	ui := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":%q}`, user.ID)))
	return shortSession{token: sess.AccessToken, userinfo: ui, client: clientID}
}

func signRogue(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "rogue-kid"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	require.NoError(t, err)
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	require.NoError(t, err)
	out, err := obj.CompactSerialize()
	require.NoError(t, err)
	return out
}
