package orgsync

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

func (d *fakeDirectory) addEvent(ev keycloak.AdminEvent) {
	d.mu.Lock()
	d.events = append(d.events, ev)
	d.mu.Unlock()
}

// The watcher turns an admin event into an invalidation: the next request
// sees Keycloak's new answer long before fresh_ttl.
func TestWatcherInvalidatesOnAdminEvents(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme, globex)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h"}`)
	alice := login("u-alice")
	_, r := h.do(conf, alice, nil)
	require.Equal(t, "acme,globex", r.Header().Get("X-User-Orgs"))

	w := StartWatcher(&h.plugin.deps, 20*time.Millisecond)
	defer w.Stop()
	h.dir.addUser("u-alice", true, acme)
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-1", Time: time.Now(), OperationType: "DELETE",
		ResourceType: keycloak.ResourceOrganizationMembership, ResourcePath: "organizations/org-2/members/u-alice"})

	deadline := time.Now().Add(3 * time.Second)
	for {
		_, r = h.do(conf, alice, nil)
		if r.Header().Get("X-User-Orgs") == "acme" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the event never invalidated the cached list")
		time.Sleep(10 * time.Millisecond)
	}
	assert.Equal(t, SourceKeycloak, r.Header().Get(identity.HeaderOrgsSource))

	// The position is kept: the same event is not handled twice.
	calls := h.dir.orgCalls.Load()
	time.Sleep(100 * time.Millisecond)
	_, r = h.do(conf, alice, nil)
	assert.Equal(t, SourceCache, r.Header().Get(identity.HeaderOrgsSource))
	assert.Equal(t, calls, h.dir.orgCalls.Load())
}

// A Keycloak outage fails polls without invalidating anything, and the
// watcher picks up the events once Keycloak answers again.
func TestWatcherSurvivesKeycloakFailures(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-bob", true, acme)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h","check_account":false}`)
	bob := login("u-bob")
	_, _ = h.do(conf, bob, nil)

	w := StartWatcher(&h.plugin.deps, 20*time.Millisecond)
	defer w.Stop()
	time.Sleep(100 * time.Millisecond) // a position is saved
	h.dir.setFail(errKeycloakDown)
	time.Sleep(100 * time.Millisecond)
	// The change happens while Keycloak is unreachable for the watcher.
	h.dir.addUser("u-bob", true, acme, globex)
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-2", Time: time.Now(), OperationType: "CREATE",
		ResourceType: keycloak.ResourceUser, ResourcePath: "users/u-bob"})
	time.Sleep(100 * time.Millisecond)
	h.dir.setFail(nil)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, r := h.do(conf, bob, nil)
		if r.Header().Get("X-User-Orgs") == "acme,globex" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the watcher did not recover")
		time.Sleep(10 * time.Millisecond)
	}
}
