package orgsync

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// The account check holds on every request, not only on the one that asked
// Keycloak: a disabled or deleted user is refused from the cache too.
func TestAccountCheckHoldsOnCacheHits(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-off", false, acme)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h"}`)
	for _, tc := range []struct{ sub, reason string }{{"u-off", ReasonAccountDisabled}, {"u-gone", ReasonAccountUnknown}} {
		user := login(tc.sub, "acme")
		for i := range 3 {
			w, r := h.do(conf, user, nil)
			assert.Equal(t, http.StatusUnauthorized, w.Code, "%s request %d", tc.sub, i)
			assert.Contains(t, w.Body.String(), tc.reason, "%s request %d", tc.sub, i)
			assert.Empty(t, r.Header().Get("X-User-Orgs"))
		}
	}
	assert.EqualValues(t, 2, h.dir.calls.Load(), "asked once per user: the later refusals came from the cache")
}

// Without userinfo before orgsync nothing proves an X-ID-Token (it is
// unsigned base64 JSON): a client's is removed, in any spelling.
func TestOrgsyncOnlyRouteRemovesClientIDToken(t *testing.T) {
	h := newHarness(t)
	conf := h.route(`{}`)
	for _, name := range []string{"X-ID-Token", "X-Id-Token", "x-id-token", "x_id_token"} {
		w, r := h.doAnonymous(conf, map[string]string{name: "eyJzdWIiOiJ1LWFkbWluIn0="})
		require.Equal(t, http.StatusOK, w.Code)
		assert.Empty(t, r.Header().Get(identity.HeaderIDToken), name)
		for k := range r.Header().View() {
			assert.NotEqual(t, "x-id-token", identity.NormalizeName(k), "%s survived as %s", name, k)
		}
	}
}

// A disabled organization grants nothing: it is not reported as a
// membership.
func TestDisabledOrganizationIsNotAMembership(t *testing.T) {
	h := newHarness(t)
	closed := keycloak.Organization{ID: "org-3", Alias: "initech", Enabled: false}
	h.dir.addUser("u-alice", true, acme, closed)
	w, r := h.do(h.route(`{}`), login("u-alice", "acme", "initech"), nil)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, "acme", r.Header().Get("X-User-Orgs"))
}

// on_keycloak_error "deny" never serves a list Keycloak could not confirm:
// past fresh_ttl with Keycloak down the answer is 503, not the old list.
func TestDenyDoesNotServeStaleLists(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{"on_keycloak_error":"deny","fresh_ttl":"1s","stale_ttl":"1s"}`)
	alice := login("u-alice")
	w, r := h.do(conf, alice, nil)
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "acme", r.Header().Get("X-User-Orgs"))

	h.dir.setFail(errKeycloakDown)
	time.Sleep(1100 * time.Millisecond)
	for i := range 5 {
		w, r := h.do(conf, alice, nil)
		assert.Equal(t, http.StatusServiceUnavailable, w.Code, "request %d", i)
		assert.Contains(t, w.Body.String(), ReasonKeycloakError)
		assert.NotEqual(t, SourceStale, r.Header().Get(identity.HeaderOrgsSource))
		time.Sleep(20 * time.Millisecond)
	}
}

// Without userinfo before it, orgsync refuses an emitted header sent twice
// (in one spelling or two) rather than strip it: the upstream might read
// either copy, or both joined.
func TestOrgsyncOnlyRouteRefusesRepeatedIdentityHeaders(t *testing.T) {
	h := newHarness(t)
	conf := h.route(`{}`)
	for _, pair := range [][2]string{{"X-User-Orgs", "X-User-Orgs"}, {"X-User-Id", "x_user_id"},
		{"X-Identity-Assertion", "X_IDENTITY_ASSERTION"}} {
		r := runnertest.NewRequest(requestIDs.Add(1), 1, nil)
		r.Hdr.View().Add(pair[0], "acme")
		r.Hdr.View().Add(pair[1], "globex")
		w := httptest.NewRecorder()
		h.plugin.RequestFilter(conf, w, r)
		assert.Equal(t, http.StatusBadRequest, w.Code, "%s + %s", pair[0], pair[1])
		assert.Contains(t, w.Body.String(), ReasonDuplicateHeader)
	}
}
