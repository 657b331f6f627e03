//go:build integration

package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// The attacks of the security review, each through the real runner binary
// and the APISIX-faithful client, against the real Keycloak and Redis.

func (r *runner) doHeader(t *testing.T, route *apisix.Route, h http.Header) *apisix.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.gw.Do(ctx, route, &apisix.Request{Method: http.MethodGet, Path: "/app", Header: h, SrcIP: "192.0.2.10"})
	require.NoError(t, err)
	return res
}

func headerOf(m map[string]string) http.Header {
	h := http.Header{}
	for k, v := range m {
		h[k] = []string{v}
	}
	return h
}

// A repeated identity header (the same name twice, two letter cases, '-'
// and '_') is refused, so the upstream never reads "acme,globex".
func TestSecurityRepeatedIdentityHeaderRefused(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "dup")
	kctest.AddMember(t, "acme", user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	routes := map[string]*apisix.Route{
		"userinfo":         newRoute(userinfoConf(t, "")),
		"userinfo+orgsync": newRoute(userinfoConf(t, ""), orgsyncConf(`{}`)),
	}
	for rname, route := range routes {
		for _, name := range []string{"X-User-Orgs", "X-User-Id", "X-User-Email", "X-Userinfo", "X-Access-Token",
			"X-ID-Token", "X-Identity-Assertion"} {
			for _, second := range []string{name, strings.ToLower(name), strings.ReplaceAll(name, "-", "_")} {
				t.Run(rname+"/"+name+"/"+second, func(t *testing.T) {
					h := headerOf(headersOf(sess))
					if h.Get(name) == "" {
						h[name] = []string{"acme"}
					}
					h[second] = append(h[second], "globex")
					res := r.doHeader(t, route, h)
					assert.False(t, res.Upstream, "a repeated %s reached the upstream", name)
					assert.Equal(t, 400, res.Status)
					assert.Equal(t, "duplicate_identity_header", reasonOf(t, res))
				})
			}
		}
	}
	// The control: one of each passes, with exactly the runner's value.
	res := r.do(t, routes["userinfo+orgsync"], headersOf(sess))
	require.True(t, res.Upstream)
	assert.Equal(t, []string{"acme"}, res.UpstreamHeader.Values("X-User-Orgs"))
}

// A client with its own valid token and a forged X-Userinfo naming itself
// gets none of the forged claims into X-User-*, the assertion or the
// rewritten X-Userinfo, with and without orgsync.
func TestSecurityForgedClaimsNotSigned(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "forge") // in no organization
	sess := kctest.Login(t, user.Username, user.Password)
	claims := sess.UserinfoMap(t)
	claims["organization"] = map[string]any{"globex": map[string]any{"id": "forged-org-id"}}
	claims["groups"] = []string{"/admins"}
	claims["realm_access"] = map[string]any{"roles": []string{"admin"}}
	claims["email"] = "ceo@example.org"
	forged, _ := json.Marshal(claims)
	headers := map[string]string{"x-userinfo": base64.StdEncoding.EncodeToString(forged), "x-access-token": sess.AccessToken}
	for name, route := range map[string]*apisix.Route{
		"userinfo":         newRoute(userinfoConf(t, `,"claim_headers":{"X-User-Id":"sub","X-User-Email":"email","X-User-Orgs":"organization","X-Groups":"groups"}`)),
		"userinfo+orgsync": newRoute(userinfoConf(t, `,"claim_headers":{"X-User-Id":"sub","X-User-Email":"email","X-User-Orgs":"organization","X-Groups":"groups"}`), orgsyncConf(`{}`)),
	} {
		t.Run(name, func(t *testing.T) {
			res := r.do(t, route, headers)
			require.True(t, res.Upstream, "status %d %s", res.Status, res.Body)
			h := res.UpstreamHeader
			assert.Equal(t, user.ID, h.Get("X-User-Id"))
			assert.Empty(t, h.Get("X-User-Orgs"), "forged organization")
			assert.Empty(t, h.Get("X-Groups"), "forged groups")
			assert.NotEqual(t, "ceo@example.org", h.Get("X-User-Email"))
			ui := decodeUserinfo(t, h.Get("X-Userinfo"))
			if orgs, ok := ui["organization"]; ok {
				// With orgsync: Keycloak's answer (no organization), never the forged one.
				assert.Equal(t, map[string]any{}, orgs)
			}
			assert.NotContains(t, ui, "groups")
			// realm_access is in Keycloak's access token: the token's roles, not the forged ones.
			assert.NotContains(t, fmt.Sprint(ui["realm_access"]), "admin")
			a := verifyAssertion(t, r, h.Get("X-Identity-Assertion"))
			assert.Equal(t, map[string]any{}, a["organization"])
			assert.NotContains(t, a, "groups")
			assert.NotContains(t, fmt.Sprint(a["roles"]), "admin")
			assert.NotEqual(t, "ceo@example.org", a["email"])
		})
	}
}

// X-ID-Token is unsigned: one naming the user with forged claims is removed
// unless a verified X-Raw-ID-Token vouches for it (and then it is rewritten
// from that token).
func TestSecurityForgedIDTokenRemoved(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "idtok")
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""))
	forged := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":%q,"email_verified":true,"acr":"mfa"}`, user.ID)))

	h := headersOf(sess)
	h["x-id-token"] = forged
	res := r.do(t, route, h)
	require.True(t, res.Upstream)
	assert.Empty(t, res.UpstreamHeader.Get("X-ID-Token"), "an unverified X-ID-Token never passes")

	h["x-raw-id-token"] = sess.IDToken
	res = r.do(t, route, h)
	require.True(t, res.Upstream)
	got := decodeUserinfo(t, res.UpstreamHeader.Get("X-ID-Token"))
	assert.Equal(t, user.ID, got["sub"])
	assert.NotEqual(t, "mfa", got["acr"], "rewritten from the verified ID token, not the forged header")
	assert.Equal(t, "ID", got["typ"])

	other := kctest.CreateUser(t, "idtok-other")
	h["x-raw-id-token"] = kctest.Login(t, other.Username, other.Password).IDToken
	res = r.do(t, route, h)
	require.True(t, res.Upstream)
	assert.Empty(t, res.UpstreamHeader.Get("X-ID-Token"), "another user's ID token")
	assert.Empty(t, res.UpstreamHeader.Get("X-Raw-ID-Token"))
}

func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// One valid token and 12 000 distinct ~31 KB X-Userinfo values once took the
// runner from 23 MB to 443 MB; the reuse cache is now bounded in bytes.
func TestSecurityDistinctUserinfoFloodIsBounded(t *testing.T) {
	// Memory is measured on the binary as shipped: the race detector's
	// shadow memory would multiply it.
	r := startRunnerBinary(t, shippedBinary(t), baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "flood")
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""))
	base := sess.UserinfoMap(t)
	base["pad"] = strings.Repeat("p", 22<<10)
	start := rssBytes(t, r.Pid())
	for i := 0; i < 12000; i++ {
		base["n"] = i
		b, _ := json.Marshal(base)
		res := r.do(t, route, map[string]string{"x-userinfo": base64.StdEncoding.EncodeToString(b), "x-access-token": sess.AccessToken})
		require.True(t, res.Upstream, "request %d: %d %s", i, res.Status, res.Body)
	}
	end := rssBytes(t, r.Pid())
	t.Logf("runner RSS: %d MB before, %d MB after 12 000 distinct 31 KB X-Userinfo values", start>>20, end>>20)
	assert.Less(t, end, int64(160<<20), "resident memory stays bounded")
}

// Many routes prepared and used before (a runner restart with many routes)
// leave nothing pending: the first verified request on a userinfo+orgsync
// route passes (it once got 500 userinfo_missing_before_orgsync).
func TestSecurityManyRoutesDoNotBreakTheChain(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "routes")
	sess := kctest.Login(t, user.Username, user.Password)
	for i := 0; i < 1100; i++ {
		res := r.do(t, newRoute(userinfoConf(t, "")), headersOf(sess))
		require.True(t, res.Upstream)
	}
	res := r.do(t, newRoute(userinfoConf(t, ""), orgsyncConf(`{}`)), headersOf(sess))
	assert.True(t, res.Upstream, "status %d %s", res.Status, res.Body)
	assert.Equal(t, "keycloak", res.UpstreamHeader.Get("X-User-Orgs-Source"))
}

// Config keys are exact: a case twin or a duplicate cannot turn verification
// off; the route answers 500 instead.
func TestSecurityConfigKeysAreExact(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	iss := kctest.Env(t).Issuer
	forged := base64.StdEncoding.EncodeToString([]byte(`{"sub":"u-admin"}`))
	for _, conf := range []string{
		fmt.Sprintf(`{"issuer":%q,"audience":"apisix","verify_token":true,"Verify_Token":false}`, iss),
		fmt.Sprintf(`{"issuer":%q,"audience":"apisix","verify_token":true,"verify_token":false}`, iss),
		fmt.Sprintf(`{"issuer":%q,"audience":"apisix","VERIFY_TOKEN":false}`, iss),
	} {
		res := r.do(t, newRoute(apisix.PluginConf{Name: "userinfo", Value: conf}), map[string]string{"x-userinfo": forged})
		assert.False(t, res.Upstream, conf)
		assert.Equal(t, 500, res.Status, conf)
		assert.Equal(t, "misconfigured", reasonOf(t, res))
	}
}

// leeway "0s" is zero: a token one second past its exp is refused.
func TestSecurityZeroLeewayIsZero(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "leeway")
	short := shortLivedLogin(t, user)
	time.Sleep(2500 * time.Millisecond)
	h := map[string]string{"x-userinfo": short.userinfo, "x-access-token": short.token}
	res := r.do(t, newRoute(userinfoConfFor(t, short.client, `,"leeway":"0s"`)), h)
	assert.Equal(t, 401, res.Status)
	assert.Equal(t, "token_expired", reasonOf(t, res))
	res = r.do(t, newRoute(userinfoConfFor(t, short.client, `,"leeway":"1m"`)), h)
	assert.True(t, res.Upstream, "within a 1m leeway")
}

// secret_env may not name a variable whose value is public or the runner's
// own credential: the invalidation route answers 500.
func TestSecuritySecretEnvIsDedicated(t *testing.T) {
	e := baseEnv(t, kctest.Env(t).URL)
	r := startRunner(t, e)
	for _, name := range []string{"APISIX_CONF_EXPIRE_TIME", "KEYCLOAK_CLIENT_SECRET", "RUNNER_LOG_LEVEL"} {
		hook := newRoute(orgsyncConf(fmt.Sprintf(`{"invalidate":true,"secret_env":%q}`, name)))
		body := []byte(fmt.Sprintf(`{"user_ids":["x"],"time":%d}`, time.Now().UnixMilli()))
		res := post(t, r, hook, body, sign(body))
		assert.Equal(t, 500, res.Status, name)
		assert.Equal(t, "misconfigured", reasonOf(t, res))
	}
}

// A signed invalidation can be replayed neither after max_age nor within it.
func TestSecurityInvalidationReplay(t *testing.T) {
	e := baseEnv(t, kctest.Env(t).URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	r := startRunner(t, e)
	hook := newRoute(orgsyncConf(`{"invalidate":true,"secret_env":"ORGSYNC_WEBHOOK_SECRET","rate_limit":5}`))
	body := []byte(fmt.Sprintf(`{"user_ids":["u-replay"],"time":%d}`, time.Now().UnixMilli()))
	require.Equal(t, 200, post(t, r, hook, body, sign(body)).Status)
	again := post(t, r, hook, body, sign(body))
	assert.Equal(t, 409, again.Status)
	assert.Equal(t, "invalidation_replayed", reasonOf(t, again))
	old := []byte(fmt.Sprintf(`{"user_ids":["u-replay"],"time":%d}`, time.Now().Add(-10*time.Minute).UnixMilli()))
	res := post(t, r, hook, old, sign(old))
	assert.Equal(t, 401, res.Status)
	assert.Equal(t, "invalidation_too_old", reasonOf(t, res))
	undated := []byte(`{"user_ids":["u-replay"]}`)
	assert.Equal(t, 401, post(t, r, hook, undated, sign(undated)).Status)

	limited := 0
	for i := 0; i < 20; i++ {
		b := []byte(fmt.Sprintf(`{"user_ids":["u-%d"],"time":%d}`, i, time.Now().UnixMilli()))
		if post(t, r, hook, b, sign(b)).Status == 429 {
			limited++
		}
	}
	assert.Greater(t, limited, 5, "20 calls at once against 5/s")
}

// orgsync without userinfo before it removes forged identity headers from an
// anonymous request.
func TestSecurityOrgsyncAloneStripsForgedHeaders(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	route := newRoute(orgsyncConf(`{}`))
	forged := map[string]string{"X-User-Id": "u-admin", "x_user_orgs": "globex", "X-User-Orgs-Source": "keycloak",
		"X-Identity-Assertion": "eyJhbGciOiJub25lIn0.e30.", "x-id-token": "e30="}
	res := r.do(t, route, forged)
	require.True(t, res.Upstream)
	for name := range forged {
		assert.Empty(t, res.UpstreamHeader.Values(name), "%s reached the upstream", name)
	}
}

// A 503 for an unreachable key set says why, not where the key set is.
func TestSecurityRefusalHidesInternalURLs(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "jwks")
	sess := kctest.Login(t, user.Username, user.Password)
	internal := fmt.Sprintf("http://127.0.0.1:%d/internal/certs", freePort(t))
	route := newRoute(userinfoConf(t, fmt.Sprintf(`,"jwks_uri":%q`, internal)))
	res := r.do(t, route, headersOf(sess))
	assert.Equal(t, 503, res.Status)
	assert.Equal(t, "token_keys_unavailable", reasonOf(t, res))
	assert.NotContains(t, string(res.Body), "127.0.0.1")
	assert.NotContains(t, string(res.Body), "internal")
}

// An aud entry spelled "azp:<client>" once satisfied audience <client>; the
// audience and azp checks are now separate. The token is a real Keycloak
// token whose aud an audience mapper sets to "azp:mitxonline".
func TestSecurityAudienceAndAzpSeparate(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "aud")
	clientID := fmt.Sprintf("aud-%d", time.Now().UnixNano())
	kctest.CreateClient(t, map[string]any{
		"clientId": clientID, "publicClient": false, "secret": "aud-client-secret", "directAccessGrantsEnabled": true,
		"standardFlowEnabled": false,
		"protocolMappers": []map[string]any{{
			"name": "forged-audience", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
			"config": map[string]string{"included.custom.audience": "azp:mitxonline", "access.token.claim": "true",
				"id.token.claim": "false"},
		}},
	})
	tok := kctest.PasswordGrant(t, clientID, "aud-client-secret", user.Username, user.Password, "openid")
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok.AccessToken, ".")[1])
	require.NoError(t, err)
	require.Contains(t, string(payload), `azp:mitxonline`, "the mapper wrote the forged audience entry")

	h := map[string]string{"x-userinfo": base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":%q}`, user.ID))),
		"x-access-token": tok.AccessToken}
	res := r.do(t, newRoute(userinfoConfFor(t, "mitxonline", "")), h)
	assert.Equal(t, 401, res.Status)
	assert.Equal(t, "token_wrong_audience", reasonOf(t, res))
	res = r.do(t, newRoute(userinfoConfFor(t, clientID, "")), h)
	assert.True(t, res.Upstream, "the token's azp is accepted as the audience: %d %s", res.Status, res.Body)
}

// A token Keycloak issued to another client of the realm is not a login to
// this route: with audience set to the apisix client, a user's token of
// another application and the runner's own service-account token are
// refused (or stripped, on an anonymous route); only "any_audience": true
// takes them. The apisix token passes through its azp, the claim Keycloak
// names the client in (its aud is "account" here, no audience mapper).
func TestSecurityTokenOfAnotherClientIsRefused(t *testing.T) {
	s := kctest.Env(t)
	r := startRunner(t, baseEnv(t, s.URL))
	user := kctest.CreateUser(t, "otherapp")
	own := kctest.Login(t, user.Username, user.Password)
	claims := tokenClaims(t, own.AccessToken)
	require.Equal(t, s.ClientID, claims["azp"], "Keycloak names the client in azp")

	clientID := fmt.Sprintf("other-app-%d", time.Now().UnixNano())
	kctest.CreateClient(t, map[string]any{
		"clientId": clientID, "publicClient": false, "secret": "other-app-secret", "directAccessGrantsEnabled": true,
		"standardFlowEnabled": false,
	})
	other := kctest.PasswordGrant(t, clientID, "other-app-secret", user.Username, user.Password, "openid profile email")
	otherClaims := tokenClaims(t, other.AccessToken)
	require.Equal(t, clientID, otherClaims["azp"])
	require.Equal(t, user.ID, otherClaims["sub"], "the same user, the same issuer: only the client differs")
	ui := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":%q}`, user.ID)))
	otherApp := map[string]string{"x-userinfo": ui, "x-access-token": other.AccessToken}
	serviceAccount := map[string]string{"x-access-token": kctest.ServiceAccountToken(t)}

	reject := newRoute(userinfoConf(t, ""))
	res := r.do(t, reject, headersOf(own))
	require.True(t, res.Upstream, "the apisix client's token passes: %d %s", res.Status, res.Body)
	for name, h := range map[string]map[string]string{"another app's token": otherApp, "a service account's token": serviceAccount} {
		res = r.do(t, reject, h)
		assert.Equal(t, 401, res.Status, name)
		assert.False(t, res.Upstream, name)
		assert.Equal(t, "token_wrong_audience", reasonOf(t, res), name)
	}

	// A route that names no client and does not opt out lets nobody in.
	silent := newRoute(userinfoConfFor(t, "", ""))
	for name, h := range map[string]map[string]string{"the apisix client's token": headersOf(own),
		"another app's token": otherApp, "a service account's token": serviceAccount} {
		res = r.do(t, silent, h)
		assert.False(t, res.Upstream, name)
		assert.Equal(t, 500, res.Status, name)
		assert.Equal(t, "misconfigured", reasonOf(t, res), name)
	}

	anonymous := newRoute(userinfoConf(t, `,"on_invalid":"anonymous"`))
	res = r.do(t, anonymous, otherApp)
	require.True(t, res.Upstream)
	for _, h := range []string{"X-User-Id", "X-Identity-Assertion", "X-Access-Token", "X-Userinfo"} {
		assert.Empty(t, res.UpstreamHeader.Get(h), "%s reached the upstream of an anonymous route", h)
	}

	anyClient := newRoute(userinfoConfFor(t, "", `,"any_audience":true`))
	res = r.do(t, anyClient, otherApp)
	require.True(t, res.Upstream, "any_audience takes a token of any client: %d %s", res.Status, res.Body)
	assert.Equal(t, user.ID, res.UpstreamHeader.Get("X-User-Id"))
}

// tokenClaims reads a JWT's payload without checking it.
func tokenClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(payload, &m))
	return m
}
