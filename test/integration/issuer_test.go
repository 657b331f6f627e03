//go:build integration

package integration

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// orgsync compares the token's whole issuer with the realm's: a runner whose
// Keycloak is another address (here a proxy) refuses tokens of a realm of the
// same name elsewhere, unless KEYCLOAK_ISSUER names that issuer.
func TestSecurityRealmIsComparedByWholeIssuer(t *testing.T) {
	proxy := newKeycloakProxy(t)
	user := kctest.CreateUser(t, "issuer")
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{}`))

	e := baseEnv(t, proxy.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	delete(e, "KEYCLOAK_ISSUER")
	elsewhere := startRunner(t, e)
	res := elsewhere.do(t, route, headersOf(sess))
	assert.Equal(t, 500, res.Status)
	assert.Equal(t, "token_realm_not_keycloak_realm", reasonOf(t, res))
	assert.Zero(t, proxy.orgLookups(user.ID), "the user was not looked up")

	e["KEYCLOAK_ISSUER"] = kctest.Env(t).Issuer
	named := startRunner(t, e)
	res = named.do(t, route, headersOf(sess))
	require.Equal(t, 200, res.Status, "%s", res.Body)
	assert.Equal(t, 1, proxy.orgLookups(user.ID))
}
