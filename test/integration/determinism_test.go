//go:build integration

package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// Two runners of a fleet, and one runner before and after a restart, give the
// upstream the same headers for the same request and the same Keycloak data
// (issue 18, item 4). Before, shape "auto" learned from the logins a process
// had seen: once any claim carried organization attributes, that process
// wrote attributes for users whose claim had none, so the runner that had seen
// one wrote another X-Userinfo than the one that had not, and a restart
// changed it back.
//
// Every header is compared byte for byte except the assertion's signature,
// iat, exp and jti: jti is random by design and iat/exp are the signing time
// (the binary has no clock to fix, and an assertion signed by another process
// cannot share them). Of the assertion, the JWS header (alg, kid) is compared
// byte for byte and the payload's claims without iat, exp and jti.
func TestRestartAndSecondRunnerEmitTheSameHeaders(t *testing.T) {
	s := kctest.Env(t)
	e := baseEnv(t, s.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"

	alias := fmt.Sprintf("plain-%d", time.Now().UnixNano())
	kctest.CreateOrganization(t, alias)
	user := kctest.CreateUser(t, "same")
	kctest.AddMember(t, alias, user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	require.Len(t, sess.UserinfoMap(t)["organization"].(map[string]any)[alias], 1,
		"the login's claim is the map without attributes")
	// Joined after the login: Keycloak's data has acme's attributes, the token's claim does not.
	kctest.AddMember(t, "acme", user.ID)

	// A login whose claim carries attributes (acme's tier), seen by the first runner only.
	rich := kctest.CreateUser(t, "same-rich")
	kctest.AddMember(t, "acme", rich.ID)
	richSess := kctest.Login(t, rich.Username, rich.Password)

	fresh := `"fresh_ttl":"5m","stale_ttl":"10m"`
	routes := map[string]*apisix.Route{
		"userinfo":            newRoute(userinfoConf(t, "")),
		"orgsync auto":        newRoute(userinfoConf(t, ""), orgsyncConf(`{`+fresh+`}`)),
		"orgsync list":        newRoute(userinfoConf(t, ""), orgsyncConf(`{`+fresh+`,"shape":"list"}`)),
		"orgsync all claims":  newRoute(userinfoConf(t, ""), orgsyncConf(`{`+fresh+`,"shape":"map_attributes","claims":["organization","groups","roles"]}`)),
		"orgsync no accounts": newRoute(userinfoConf(t, ""), orgsyncConf(`{`+fresh+`,"check_account":false}`)),
	}
	// What a runner gives the upstream for each route: the second request's
	// headers (the first of a runner may fetch from Keycloak and says so in
	// X-User-Orgs-Source; from the second on every runner reads the cache).
	emitted := func(r *runner, seenRich bool) map[string]http.Header {
		out := map[string]http.Header{}
		for name, route := range routes {
			if seenRich {
				require.Equal(t, 200, r.do(t, route, headersOf(richSess)).Status, name)
			}
			require.Equal(t, 200, r.do(t, route, headersOf(sess)).Status, name)
			res := r.do(t, route, headersOf(sess))
			require.Equal(t, 200, res.Status, name)
			require.True(t, res.Upstream, name)
			out[name] = res.UpstreamHeader
		}
		return out
	}

	first := startRunner(t, e)
	want := emitted(first, true)
	orgs := decodeUserinfo(t, want["orgsync auto"].Get("X-Userinfo"))["organization"].(map[string]any)
	assert.Equal(t, map[string]any{"id": kctest.OrgIDByAlias(t, "acme")}, orgs["acme"],
		"auto on a map without attributes: the map without attributes, whatever else the runner saw")

	second := startRunner(t, e)
	for name, got := range emitted(second, false) {
		sameEmission(t, "second runner, "+name, want[name], got)
	}

	require.NoError(t, first.Stop())
	restarted := startRunner(t, e)
	for name, got := range emitted(restarted, false) {
		sameEmission(t, "after a restart, "+name, want[name], got)
	}
}

// sameEmission compares what two runners gave the upstream: every header
// byte for byte, the assertion as described above.
func sameEmission(t *testing.T, what string, want, got http.Header) {
	t.Helper()
	const assertionHeader = "X-Identity-Assertion"
	wantJWS, gotJWS := want.Get(assertionHeader), got.Get(assertionHeader)
	require.NotEmpty(t, wantJWS, what)
	require.NotEmpty(t, gotJWS, what)
	strip := func(h http.Header) http.Header {
		c := h.Clone()
		c.Del(assertionHeader)
		return c
	}
	assert.Equal(t, strip(want), strip(got), what)
	assert.Equal(t, strings.SplitN(wantJWS, ".", 2)[0], strings.SplitN(gotJWS, ".", 2)[0], "%s: JWS header", what)
	assert.Equal(t, assertionIdentity(t, wantJWS), assertionIdentity(t, gotJWS), "%s: assertion claims", what)
}

// assertionIdentity is an assertion's payload less iat, exp and jti.
func assertionIdentity(t *testing.T, jws string) map[string]any {
	t.Helper()
	parts := strings.Split(jws, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(payload, &claims))
	for _, name := range []string{"iat", "exp", "jti"} {
		require.Contains(t, claims, name)
		delete(claims, name)
	}
	return claims
}
