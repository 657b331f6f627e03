//go:build integration

package integration

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// Issue 15, item 1: two routes with the same userinfo settings, one without
// orgsync's account check. A deleted user's request on the lax route must not
// let the strict route answer 200 afterwards, on the real runner and Keycloak.
func TestTrustDeletedAccountRefusedAfterLaxRoute(t *testing.T) {
	// The watcher off: it would revoke the deleted user's sessions on every
	// route, and this is about what one orgsync route's cache does to another.
	e := baseEnv(t, kctest.Env(t).URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	r := startRunner(t, e)
	user := kctest.CreateUser(t, "lax")
	kctest.AddMember(t, "acme", user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	lax := newRoute(userinfoConf(t, ""), orgsyncConf(`{"check_account":false,"fresh_ttl":"1s","stale_ttl":"2s"}`))
	strict := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"1s","stale_ttl":"2s"}`))
	require.True(t, r.do(t, strict, headersOf(sess)).Upstream)

	kctest.DeleteUser(t, user.ID)
	// The access token stays valid; the strict route's cache entry expires
	// (fresh_ttl): wait for the strict route to see it first, then go
	// through the lax one.
	eventually(t, 15*time.Second, "the strict route refuses the deleted user", func() bool {
		return r.do(t, strict, headersOf(sess)).Status == 401
	})
	// Twice: the first answer is read from Keycloak, the second from the
	// cache, as the strict route's next answers are.
	for range 2 {
		res := r.do(t, lax, headersOf(sess))
		require.True(t, res.Upstream, "check_account false serves the memberships only (status %d %s)", res.Status, res.Body)
	}
	for i := range 5 {
		res := r.do(t, strict, headersOf(sess))
		assert.False(t, res.Upstream, "request %d on the strict route after the lax one reached the upstream", i)
		assert.Equal(t, 401, res.Status)
		assert.Equal(t, "account_unknown", reasonOf(t, res))
	}
}

// Issue 15, item 2: for one token, the assertion (without its times and id)
// and the trusted headers are the same whether X-Userinfo is complete,
// minimal or carries keys of its own, with and without orgsync.
func TestTrustMinimalUserinfoHidesNothing(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "hide")
	kctest.AddMember(t, "acme", user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	complete := sess.UserinfoMap(t)
	extra := map[string]any{}
	for k, v := range complete {
		extra[k] = v
	}
	extra["email"] = "ceo@example.org"
	extra["nickname"] = "x"
	extra["organization"] = map[string]any{}
	variants := map[string]map[string]any{"complete": complete, "minimal": {"sub": user.ID}, "extra": extra}
	claimHeaders := `,"claim_headers":{"X-User-Id":"sub","X-User-Email":"email","X-User-Orgs":"organization","X-User-Name":"preferred_username"}`
	for name, route := range map[string]*apisix.Route{
		"userinfo":         newRoute(userinfoConf(t, claimHeaders)),
		"userinfo+orgsync": newRoute(userinfoConf(t, claimHeaders), orgsyncConf(`{}`)),
	} {
		t.Run(name, func(t *testing.T) {
			var want map[string]any
			var wantHeaders []string
			for _, v := range []string{"complete", "minimal", "extra"} {
				b, err := json.Marshal(variants[v])
				require.NoError(t, err)
				res := r.do(t, route, map[string]string{"x-userinfo": base64.StdEncoding.EncodeToString(b),
					"x-access-token": sess.AccessToken})
				require.True(t, res.Upstream, "%s: status %d %s", v, res.Status, res.Body)
				a := verifyAssertion(t, r, res.UpstreamHeader.Get("X-Identity-Assertion"))
				delete(a, "iat")
				delete(a, "exp")
				delete(a, "jti")
				// Where the list was read (Keycloak, then the cache) is not a claim of the user.
				if a["organization_source"] == "cache" {
					a["organization_source"] = "keycloak"
				}
				var headers []string
				for _, h := range []string{"X-Userinfo", "X-User-Id", "X-User-Email", "X-User-Orgs", "X-User-Name"} {
					headers = append(headers, h+"="+res.UpstreamHeader.Get(h))
				}
				if want == nil {
					want, wantHeaders = a, headers
					assert.Equal(t, user.Email, a["email"])
					assert.Contains(t, a["organization"], "acme")
					continue
				}
				assert.Equal(t, want, a, "assertion with the %s X-Userinfo", v)
				assert.Equal(t, wantHeaders, headers, "trusted headers with the %s X-Userinfo", v)
			}
		})
	}
}

// Issue 15, item 7: every header openid-connect can set is verified by the
// runner or removed before the upstream, on every route shape.
func TestTrustUnverifiedOIDCHeadersRemovedOnEveryRouteShape(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "oidchdr")
	sess := kctest.Login(t, user.Username, user.Password)
	forgedIDToken := base64.StdEncoding.EncodeToString([]byte(`{"sub":"u-admin","acr":"mfa"}`))
	other := kctest.CreateUser(t, "oidchdr-other")
	otherRaw := kctest.Login(t, other.Username, other.Password).IDToken
	shapes := map[string]struct {
		route    *apisix.Route
		identity bool
	}{
		"userinfo only":          {newRoute(userinfoConf(t, "")), true},
		"userinfo and orgsync":   {newRoute(userinfoConf(t, ""), orgsyncConf(`{}`)), true},
		"orgsync only":           {newRoute(orgsyncConf(`{}`)), false},
		"userinfo, anonymous":    {newRoute(userinfoConf(t, "")), false},
		"userinfo+orgsync, anon": {newRoute(userinfoConf(t, ""), orgsyncConf(`{}`)), false},
	}
	forged := map[string]string{"X-ID-Token": forgedIDToken, "X-Raw-ID-Token": otherRaw,
		"X-Refresh-Token": "eyJhbGciOiJIUzUxMiJ9.e30.forged"}
	for name, shape := range shapes {
		for header, value := range forged {
			for _, spelling := range []string{header, strings.ToLower(header), strings.ReplaceAll(header, "-", "_")} {
				t.Run(name+"/"+spelling, func(t *testing.T) {
					h := map[string]string{"accept": "text/html"}
					if shape.identity {
						h = headersOf(sess)
					}
					h[spelling] = value
					res := r.do(t, shape.route, h)
					require.True(t, res.Upstream, "status %d %s", res.Status, res.Body)
					for k := range res.UpstreamHeader {
						assert.NotEqual(t, strings.ToLower(header), strings.ReplaceAll(strings.ToLower(k), "_", "-"),
							"%s reached the upstream as %s", spelling, k)
					}
				})
			}
		}
	}
	// The control: the user's own verified raw ID token passes on a userinfo route.
	h := headersOf(sess)
	h["x-raw-id-token"] = sess.IDToken
	res := r.do(t, shapes["userinfo only"].route, h)
	require.True(t, res.Upstream)
	assert.Equal(t, sess.IDToken, res.UpstreamHeader.Get("X-Raw-ID-Token"))
}
