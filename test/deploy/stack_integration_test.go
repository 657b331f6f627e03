//go:build integration

package deploy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
)

// TestDemoStack runs the routes of conf/apisix.yaml, as they are, through the
// real runner (started with the docker-compose.yml environment) and the
// APISIX-faithful client, against a real Keycloak that imported
// conf/keycloak/realm-demo.json:
//
//	DEMO_KEYCLOAK_URL=http://127.0.0.1:8080 go test -tags integration -run TestDemoStack ./test/deploy/
//
// Only the Keycloak addresses are swapped: the compose network name
// (keycloak:8080) for DEMO_KEYCLOAK_URL, and the issuer for the one Keycloak
// announces. Login is done as lua-resty-openidc does it: tokens, then one
// userinfo call, frozen in the session.
func TestDemoStack(t *testing.T) {
	base := strings.TrimSuffix(os.Getenv("DEMO_KEYCLOAK_URL"), "/")
	if base == "" {
		t.Fatal("DEMO_KEYCLOAK_URL is not set: start Keycloak with conf/keycloak/realm-demo.json imported")
	}
	p := loadCompose(t)
	e := env(p.Services[apisixService])
	realm := e["KEYCLOAK_REALM"]
	issuer := discoverIssuer(t, base, realm)

	name := strings.TrimPrefix(e["RUNNER_SIGNING_KEY_FILE"], "/run/secrets/")
	// KEYCLOAK_ISSUER as compose sets it, with the issuer this Keycloak announces.
	vars := []string{"KEYCLOAK_URL=" + base, "KEYCLOAK_ISSUER=" + issuer, "KEYCLOAK_EVENTS_INTERVAL=1s",
		"RUNNER_SIGNING_KEY_FILE=" + p.Secrets[name].File}
	for _, k := range []string{"KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID", "KEYCLOAK_CLIENT_SECRET", "ORGSYNC_WEBHOOK_SECRET", "RUNNER_LOG_LEVEL"} {
		vars = append(vars, k+"="+e[k])
	}
	r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: runnerBinary(t), Args: []string{"run"}, Env: vars})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Stop() })
	g := apisix.NewGateway(r.Socket())
	t.Cleanup(g.Close)

	kcHost := e["KEYCLOAK_URL"] // http://keycloak:8080 in the compose network
	frontIssuer := env(p.Services["keycloak"])["KC_HOSTNAME"] + "/realms/" + realm
	routes := map[string]*apisix.Route{}
	var oidc map[string]any
	for _, rt := range loadRoutes(t).Routes {
		ep, ok := extPlugin(t, rt, postReq)
		require.True(t, ok)
		ar := &apisix.Route{ID: rt.ID}
		for _, c := range ep.Conf {
			v := strings.ReplaceAll(c.Value, frontIssuer, issuer)
			v = strings.ReplaceAll(v, kcHost, base)
			ar.Conf = append(ar.Conf, apisix.PluginConf{Name: c.Name, Value: v})
		}
		routes[rt.ID] = ar
		if rt.ID == "app" {
			oidc = pluginConf(rt, "openid-connect")
		}
	}
	require.NotNil(t, oidc)

	// Alice logs in: the access token and the userinfo of that moment.
	tok := token(t, base, realm, url.Values{"grant_type": {"password"}, "client_id": {asString(oidc["client_id"])},
		"client_secret": {asString(oidc["client_secret"])}, "username": {"alice"}, "password": {"alice-demo-password"},
		"scope": {asString(oidc["scope"])}})
	req, err := http.NewRequest(http.MethodGet, base+"/realms/"+realm+"/protocol/openid-connect/userinfo", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	userinfo, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", userinfo)
	var claims struct {
		Sub string `json:"sub"`
	}
	require.NoError(t, json.Unmarshal(userinfo, &claims))
	session := http.Header{"X-Userinfo": {base64.StdEncoding.EncodeToString(userinfo)}, "X-Access-Token": {tok},
		"Host": {"localhost:9080"}}
	do := func(route string, h http.Header) *apisix.Result {
		t.Helper()
		res, err := g.Do(context.Background(), routes[route], &apisix.Request{Path: "/courses", Header: h.Clone()})
		require.NoError(t, err)
		return res
	}

	res := do("app", session)
	require.True(t, res.Upstream, "status %d %s", res.Status, res.Body)
	assert.Equal(t, "acme", res.UpstreamHeader.Get("X-User-Orgs"))
	assert.Equal(t, claims.Sub, res.UpstreamHeader.Get("X-User-Id"))
	require.Contains(t, routes, "acme-only")
	acme := do("acme-only", session)
	assert.True(t, acme.Upstream, "alice, a member of acme, passes the acme-only route: status %d %s", acme.Status, acme.Body)

	// The app verifies the assertion against the JWKS route.
	jwksRes := do("identity-assertion-jwks", http.Header{})
	require.Equal(t, http.StatusOK, jwksRes.Status)
	var set jose.JSONWebKeySet
	require.NoError(t, json.Unmarshal(jwksRes.Body, &set))
	a, err := jwt.ParseSigned(res.UpstreamHeader.Get("X-Identity-Assertion"), []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	require.NoError(t, err)
	keys := set.Key(a.Headers[0].KeyID)
	require.NotEmpty(t, keys)
	var std jwt.Claims
	require.NoError(t, a.Claims(keys[0].Key, &std))
	require.NoError(t, std.Validate(jwt.Expected{Issuer: "apisix-identity-runner",
		AnyAudience: jwt.Audience{env(p.Services["upstream"])["ASSERTION_AUDIENCE"]}, Subject: claims.Sub, Time: time.Now()}))

	// The anonymous route strips a forged identity and passes the request on.
	anon := do("public", http.Header{"X_userinfo": {base64.StdEncoding.EncodeToString([]byte(`{"sub":"mallory"}`))}})
	assert.True(t, anon.Upstream)
	for k := range anon.UpstreamHeader {
		assert.NotContains(t, strings.ToLower(k), "userinfo", "forged %s reached the app", k)
	}

	// An administrator changes Alice's organizations; her next request, with
	// the same frozen login, shows them. (The runner's own account cannot: on
	// Keycloak 26.7+ it holds view-organizations only.)
	sa := adminToken(t, base)
	orgs := orgIDs(t, base, realm, sa)
	member := func(method, org string) {
		u := base + "/admin/realms/" + realm + "/organizations/" + orgs[org] + "/members"
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`"` + claims.Sub + `"`)
		} else {
			u += "/" + claims.Sub
		}
		req, err := http.NewRequest(method, u, body)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+sa)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Less(t, resp.StatusCode, 300, "%s %s", method, u)
	}
	waitOrgs := func(want string) {
		t.Helper()
		start := time.Now()
		var got string
		for time.Since(start) < 20*time.Second {
			if got = do("app", session).UpstreamHeader.Get("X-User-Orgs"); got == want {
				t.Logf("organizations %q seen after %s", want, time.Since(start).Round(time.Millisecond))
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("organizations: got %q, want %q", got, want)
	}
	member(http.MethodPost, "globex")
	t.Cleanup(func() { member(http.MethodDelete, "globex") })
	waitOrgs("acme,globex")
	member(http.MethodDelete, "acme")
	t.Cleanup(func() { member(http.MethodPost, "acme") })
	waitOrgs("globex")
	// The same frozen login, now outside acme: the acme-only route refuses it.
	acme = do("acme-only", session)
	assert.False(t, acme.Upstream)
	assert.Equal(t, http.StatusForbidden, acme.Status)
	assert.JSONEq(t, `{"error":"Forbidden","reason":"access_rule_not_met"}`, string(acme.Body))
}

func discoverIssuer(t *testing.T, base, realm string) string {
	t.Helper()
	resp, err := http.Get(base + "/realms/" + realm + "/.well-known/openid-configuration")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "realm %s is not imported", realm)
	var d struct {
		Issuer string `json:"issuer"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&d))
	return d.Issuer
}

func token(t *testing.T, base, realm string, form url.Values) string {
	t.Helper()
	resp, err := http.PostForm(base+"/realms/"+realm+"/protocol/openid-connect/token", form)
	require.NoError(t, err)
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	return tok.AccessToken
}

func orgIDs(t *testing.T, base, realm, bearer string) map[string]string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/admin/realms/"+realm+"/organizations?max=100", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var orgs []struct{ ID, Alias string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&orgs))
	out := map[string]string{}
	for _, o := range orgs {
		out[o.Alias] = o.ID
	}
	return out
}

// adminToken logs in as the master realm's admin of the test Keycloak
// (KEYCLOAK_TEST_ADMIN_USER / _PASSWORD, from scripts/keycloak.sh's env file).
func adminToken(t *testing.T, base string) string {
	t.Helper()
	user, password := os.Getenv("KEYCLOAK_TEST_ADMIN_USER"), os.Getenv("KEYCLOAK_TEST_ADMIN_PASSWORD")
	if user == "" {
		user, password = "admin", "admin"
	}
	return token(t, base, "master", url.Values{"grant_type": {"password"}, "client_id": {"admin-cli"},
		"username": {user}, "password": {password}})
}
