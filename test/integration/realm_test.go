//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// Two routes trust two issuers and sign for one audience, and the two
// issuers have a user of the same id (here the test realm under two names of
// its Keycloak; in production a second Keycloak restored from the first's
// backup, or any two realms whose ids collide). The assertions must tell the
// two users apart (token_iss), an app that names its realm must refuse the
// other's user, and `go-runner check` must refuse the pair of routes.
func TestAssertionNamesTheRealmOfItsUser(t *testing.T) {
	s := kctest.Env(t)
	r := startRunner(t, baseEnv(t, s.URL))
	alice := kctest.CreateUser(t, "realm")
	other := struct{ Issuer string }{kctest.AliasIssuer(t)}
	require.NotEqual(t, s.Issuer, other.Issuer)
	sessA := kctest.Login(t, alice.Username, alice.Password)
	sessB := kctest.LoginAt(t, other.Issuer, alice.Username, alice.Password)
	require.Equal(t, alice.ID, sessB.Subject(t), "the other issuer's user has the same id")

	conf := func(issuer string) apisix.PluginConf {
		return apisix.PluginConf{Name: "userinfo", Value: fmt.Sprintf(
			`{"issuer":%q,"audience":%q,"assertion":{"audience":"shared-app","ttl":"60s"}}`, issuer, s.ClientID)}
	}
	routeA, routeB := newRoute(conf(s.Issuer)), newRoute(conf(other.Issuer))
	signed := map[string]string{}
	var payloads []map[string]any
	for _, tc := range []struct {
		realm string
		route *apisix.Route
		sess  *kctest.Session
	}{{s.Issuer, routeA, sessA}, {other.Issuer, routeB, sessB}} {
		res := r.do(t, tc.route, headersOf(tc.sess))
		require.Equal(t, 200, res.Status, "body: %s", res.Body)
		jws := res.UpstreamHeader.Get("X-Identity-Assertion")
		claims := verifyAssertion(t, r, jws)
		assert.Equal(t, alice.ID, claims["sub"])
		assert.Equal(t, "apisix-identity-runner", claims["iss"])
		assert.Equal(t, tc.realm, claims["token_iss"], "the assertion names the realm of its user")
		assert.Equal(t, true, claims["email_verified"], "Keycloak's email_verified is signed")
		signed[tc.realm] = jws
		payloads = append(payloads, withoutTimes(claims))
	}
	assert.NotEqual(t, payloads[0], payloads[1], "users of two issuers with one id get the same assertion")

	// orgsync signs again after replacing the organizations: the realm stays.
	res := r.do(t, newRoute(conf(s.Issuer), orgsyncConf(`{}`)), headersOf(sessA))
	require.Equal(t, 200, res.Status, "body: %s", res.Body)
	claims := verifyAssertion(t, r, res.UpstreamHeader.Get("X-Identity-Assertion"))
	assert.Equal(t, "keycloak", claims["organization_source"])
	assert.Equal(t, s.Issuer, claims["token_iss"])

	// An app of realm A, with the verify package.
	jwks := r.do(t, newRoute(apisix.PluginConf{Name: "userinfo", Value: `{"jwks":true}`}), nil)
	require.Equal(t, 200, jwks.Status)
	v, err := verify.New(verify.Config{JWKS: jwks.Body, Issuer: "apisix-identity-runner", Audience: "shared-app",
		TokenIssuer: s.Issuer})
	require.NoError(t, err)
	id, err := v.VerifyToken(context.Background(), signed[s.Issuer])
	require.NoError(t, err)
	assert.Equal(t, alice.ID, id.Subject)
	assert.Equal(t, alice.Email, id.Email)
	assert.True(t, id.EmailVerified)
	_, err = v.VerifyToken(context.Background(), signed[other.Issuer])
	require.Error(t, err, "a user of another realm with the same id is refused")
	assert.Equal(t, verify.ReasonTokenIssuer, verify.ReasonOf(err), "%v", err)

	// The route check refuses the configuration that made this possible.
	routes := []map[string]any{}
	for i, rt := range []*apisix.Route{routeA, routeB} {
		routes = append(routes, map[string]any{"id": fmt.Sprintf("realm-%d", i), "uri": "/app/*", "plugins": map[string]any{
			"ext-plugin-post-req": map[string]any{"conf": []map[string]string{{"name": rt.Conf[0].Name, "value": rt.Conf[0].Value}}}}})
	}
	doc, err := json.Marshal(map[string]any{"routes": routes})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "apisix.json")
	require.NoError(t, os.WriteFile(file, doc, 0o600))
	out, err := exec.Command(runnerBinary, "check", file).CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "go-runner check passed two realms on one audience:\n%s", out)
	assert.Equal(t, 1, exit.ExitCode(), "%s", out)
	assert.Contains(t, string(out), `route realm-1: ext-plugin-post-req conf[0]: userinfo: assertion iss "apisix-identity-runner" aud "shared-app"`)
}

func withoutTimes(claims map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range claims {
		if k != "iat" && k != "exp" && k != "jti" {
			out[k] = v
		}
	}
	return out
}
