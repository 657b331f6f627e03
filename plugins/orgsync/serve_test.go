package orgsync

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

var (
	acme   = keycloak.Organization{ID: "org-1", Alias: "acme", Enabled: true, Attributes: map[string][]string{"tier": {"gold"}}}
	globex = keycloak.Organization{ID: "org-2", Alias: "globex", Enabled: true}
)

func TestServesCurrentOrganizationsAndCachesThem(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme, globex)
	conf := h.route(`{"fresh_ttl":"1m","stale_ttl":"1m"}`)
	alice := login("u-alice", "acme") // the token still says acme only

	w, r := h.do(conf, alice, nil)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, "acme,globex", r.Header().Get("X-User-Orgs"))
	assert.Equal(t, SourceKeycloak, r.Header().Get(identity.HeaderOrgsSource))
	assert.EqualValues(t, 1, h.dir.orgCalls.Load())

	for i := 0; i < 10; i++ {
		w, r = h.do(conf, alice, nil)
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "acme,globex", r.Header().Get("X-User-Orgs"))
		assert.Equal(t, SourceCache, r.Header().Get(identity.HeaderOrgsSource))
	}
	assert.EqualValues(t, 1, h.dir.orgCalls.Load(), "Keycloak asked once within fresh_ttl")
	assert.EqualValues(t, 2, h.emitter.Signed(), "rendered once per source, replayed after")
	assert.Equal(t, "u-alice", alice.Subject())
	assert.Equal(t, "acme", alice.Orgs().HeaderValue(), "the login's identity is not changed")
}

func TestInvalidationRefetches(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h"}`)
	alice := login("u-alice", "acme")
	_, r := h.do(conf, alice, nil)
	assert.Equal(t, "acme", r.Header().Get("X-User-Orgs"))

	h.dir.addUser("u-alice", true, acme, globex)
	require.NoError(t, invalidateUsers(t.Context(), h.plugin.deps, []string{"u-alice"}, InvalidatedByWebhook))
	_, r = h.do(conf, alice, nil)
	assert.Equal(t, "acme,globex", r.Header().Get("X-User-Orgs"))
	assert.Equal(t, SourceKeycloak, r.Header().Get(identity.HeaderOrgsSource))
}

func TestAccountStateIsEnforced(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-off", false, acme)
	conf := h.route(`{}`)
	w, _ := h.do(conf, login("u-off"), nil)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.JSONEq(t, `{"error":"Unauthorized","reason":"account_disabled"}`, w.Body.String())

	w, _ = h.do(conf, login("u-gone"), nil)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Contains(t, w.Body.String(), ReasonAccountUnknown)

	w, _ = h.do(h.route(`{"check_account":false}`), login("u-off"), nil)
	assert.Equal(t, http.StatusOK, w.Code, "check_account false serves the memberships only")
}

func TestKeycloakDown(t *testing.T) {
	h := newHarness(t)
	h.dir.setFail(errKeycloakDown)
	alice := login("u-alice", "acme")

	w, r := h.do(h.route(`{"on_keycloak_error":"stale"}`), alice, nil)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, SourceToken, r.Header().Get(identity.HeaderOrgsSource), "nothing cached: the token's claim, marked")
	assert.Equal(t, "acme", r.Header().Get("X-User-Orgs"))

	w, _ = h.do(h.route(`{"on_keycloak_error":"deny"}`), alice, nil)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.JSONEq(t, `{"error":"Service Unavailable","reason":"keycloak_unavailable"}`, w.Body.String())
}

func TestStaleServedWhenKeycloakFailsAfterFreshTTL(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{"fresh_ttl":"1s","stale_ttl":"1s"}`)
	alice := login("u-alice")
	_, r := h.do(conf, alice, nil)
	require.Equal(t, "acme", r.Header().Get("X-User-Orgs"))
	h.dir.setFail(errKeycloakDown)
	time.Sleep(1100 * time.Millisecond)
	// Past stale_ttl a request waits for Keycloak; when that fails the last
	// list is served, marked stale.
	deadline := time.Now().Add(3 * time.Second)
	for {
		w, r := h.do(conf, alice, nil)
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "acme", r.Header().Get("X-User-Orgs"))
		if r.Header().Get(identity.HeaderOrgsSource) == SourceStale {
			break
		}
		require.True(t, time.Now().Before(deadline), "never marked stale")
		time.Sleep(50 * time.Millisecond)
	}
}

// Keycloak is never asked about a sub that no signed token proved.
func TestUnverifiedIdentityIsNotLookedUp(t *testing.T) {
	h := newHarness(t)
	forged := loginOf(identity.Claims{"sub": mustJSON("u-admin")}, "", false)
	w, _ := h.do(h.route(`{}`), forged, nil)
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), ReasonNoVerifiedIdentity)
	assert.EqualValues(t, 0, h.dir.calls.Load(), "Keycloak was not asked")
}

// A token of another realm names a user of that realm: the runner's
// Keycloak client must not be asked about it.
func TestTokenOfAnotherRealmIsRefused(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	other := loginAt("https://sso.example.org/realms/another", "u-alice")
	w, _ := h.do(h.route(`{}`), other, nil)
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), ReasonRealmMismatch)
	assert.EqualValues(t, 0, h.dir.calls.Load())
	assert.True(t, sameIssuer("https://sso.example.org/realms/olapps/", "https://sso.example.org/realms/olapps"))
	assert.False(t, sameIssuer("https://sso.example.org/realms/olapps-evil", "https://sso.example.org/realms/olapps"))
	assert.False(t, sameIssuer("", "https://sso.example.org/realms/olapps"))
}

// Without userinfo before it, orgsync lets nothing identity-like through:
// forged emitted headers are removed, openid-connect's headers refused.
func TestWithoutUserinfoForgedHeadersAreRemoved(t *testing.T) {
	h := newHarness(t)
	conf := h.route(`{}`)
	forged := map[string]string{"X-User-Id": "u-admin", "x_user_orgs": "globex", "X-User-Orgs-Source": "keycloak",
		"X-Identity-Assertion": "eyJhbGciOiJub25lIn0.e30.", "X-ID-Token": "e30=", "accept": "text/html"}
	w, r := h.doAnonymous(conf, forged)
	require.Equal(t, http.StatusOK, w.Code)
	for name := range forged {
		if name != "accept" {
			assert.Empty(t, r.Header().View()[name], "%s survived", name)
		}
	}
	assert.Equal(t, "text/html", r.Header().Get("accept"))

	w, _ = h.doAnonymous(conf, map[string]string{"X-Userinfo": "e30="})
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), ReasonNoVerifiedIdentity)
	assert.EqualValues(t, 0, h.dir.calls.Load())
}

// Organizations come from Keycloak, never from what the request carried.
func TestForgedOrganizationsAreReplaced(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-mallory", true)
	mallory := login("u-mallory", "globex") // whatever userinfo passed on
	_, r := h.do(h.route(`{}`), mallory, nil)
	assert.Empty(t, r.Header().Get("X-User-Orgs"), "Keycloak says: no organization")
	ui, err := identity.DecodeUserinfo(r.Header().Get(identity.HeaderUserinfo), 0)
	require.NoError(t, err)
	assert.JSONEq(t, `[]`, string(ui["organization"]), "Keycloak's answer, in the claim's shape")
}

func TestGroupsAndRolesRefreshed(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	alice := login("u-alice")
	conf := h.route(`{"claims":["organization","groups","roles"]}`)
	w, r := h.do(conf, alice, nil)
	require.Equal(t, http.StatusOK, w.Code)
	ui, err := identity.DecodeUserinfo(r.Header().Get(identity.HeaderUserinfo), 0)
	require.NoError(t, err)
	assert.JSONEq(t, `["/staff"]`, string(ui["groups"]))
	assert.JSONEq(t, `{"roles":["course-admin"]}`, string(ui["realm_access"]))
}

func TestChangeFeedRecordsMembershipChanges(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme, globex)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h"}`)
	alice := login("u-alice", "acme")
	_, _ = h.do(conf, alice, nil)
	entries, err := h.store.ReadFeed(t.Context(), FeedStream, 10)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the token said acme, Keycloak says acme and globex")
	assert.Equal(t, "u-alice", entries[0].Fields["user"])
	assert.JSONEq(t, `["globex"]`, entries[0].Fields["added"])
	assert.JSONEq(t, `[]`, entries[0].Fields["removed"])

	h.dir.addUser("u-alice", true, globex)
	require.NoError(t, invalidateUsers(t.Context(), h.plugin.deps, []string{"u-alice"}, InvalidatedByEvents))
	_, _ = h.do(conf, alice, nil)
	entries, err = h.store.ReadFeed(t.Context(), FeedStream, 10)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	assert.JSONEq(t, `["acme"]`, entries[1].Fields["removed"])
	var at time.Time
	require.NoError(t, json.Unmarshal([]byte(`"`+entries[1].Fields["at"]+`"`), &at))
}

// shape auto is a function of the request and the route alone: a user whose
// claim came as a map without attributes gets the map without attributes,
// whatever other logins this process has seen (issue 18, item 4: a process
// that had seen attributes once wrote them for every user after, so two
// runners, or one before and after a restart, wrote different claims).
func TestAutoShapeIgnoresOtherLogins(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-plain", true, globex, acme)
	h.dir.addUser("u-rich", true, acme)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h"}`)
	plain := loginWith(identity.Claims{"sub": mustJSON("u-plain"),
		identity.ClaimOrganization: json.RawMessage(`{"globex":{"id":"org-2"}}`)})
	orgsOf := func(r interface{ Header() pkgHTTP.Header }) string {
		ui, err := identity.DecodeUserinfo(r.Header().Get(identity.HeaderUserinfo), 0)
		require.NoError(t, err)
		return string(ui["organization"])
	}
	_, r := h.do(conf, plain, nil)
	before := orgsOf(r)
	assert.JSONEq(t, `{"acme":{"id":"org-1"},"globex":{"id":"org-2"}}`, before, "the map shape the token had")

	rich := loginWith(identity.Claims{"sub": mustJSON("u-rich"),
		identity.ClaimOrganization: json.RawMessage(`{"acme":{"id":"org-1","tier":["gold"]}}`)})
	_, r = h.do(conf, rich, nil)
	assert.JSONEq(t, `{"acme":{"id":"org-1","tier":["gold"]}}`, orgsOf(r), "a claim with attributes keeps them")

	require.NoError(t, invalidateUsers(t.Context(), h.plugin.deps, []string{"u-plain"}, InvalidatedByEvents))
	_, r = h.do(conf, plain, nil)
	assert.Equal(t, before, orgsOf(r), "another login's attributes changed this user's claim")
}
