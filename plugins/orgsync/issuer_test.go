package orgsync

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A realm of the same name on another host (or scheme, port, path) is
// another directory: its user ids name other people, who must not be looked
// up in the runner's Keycloak.
func TestTokenOfSameRealmNameElsewhereIsRefused(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{}`)
	for _, issuer := range []string{
		"https://evil.example/realms/" + testRealm,
		"http://sso.example.org/realms/" + testRealm,
		"https://sso.example.org:8443/realms/" + testRealm,
		"https://sso.example.org/evil/realms/" + testRealm,
		"https://SSO.example.org/realms/" + testRealm,
	} {
		w, _ := h.do(conf, loginAt(issuer, "u-alice"), nil)
		assert.Equal(t, http.StatusInternalServerError, w.Code, issuer)
		assert.Contains(t, w.Body.String(), ReasonRealmMismatch, issuer)
	}
	assert.EqualValues(t, 0, h.dir.calls.Load(), "Keycloak was not asked")

	w, _ := h.do(conf, loginAt(testIssuer+"/", "u-alice"), nil)
	assert.Equal(t, http.StatusOK, w.Code, "the realm's own issuer, with a trailing slash: %s", w.Body)
}
