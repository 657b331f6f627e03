package orgsync

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// recordingRevoker is the revocation store as the watcher sees it: the real
// in-process store, with every revocation kept for the test to read and
// failures injected on demand.
type recordingRevoker struct {
	*cache.Revocations
	mu   sync.Mutex
	made []cache.Revocation
	fail error
}

func newRecordingRevoker(t *testing.T, c *cache.Cache) *recordingRevoker {
	t.Helper()
	store, err := cache.NewRevocations(c, cache.RevocationOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	return &recordingRevoker{Revocations: store}
}

func (r *recordingRevoker) Revoke(ctx context.Context, rev cache.Revocation) error {
	r.mu.Lock()
	fail := r.fail
	if fail == nil {
		r.made = append(r.made, rev)
	}
	r.mu.Unlock()
	if fail != nil {
		return fail
	}
	return r.Revocations.Revoke(ctx, rev)
}

func (r *recordingRevoker) setFail(err error) {
	r.mu.Lock()
	r.fail = err
	r.mu.Unlock()
}

func (r *recordingRevoker) revocations() []cache.Revocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]cache.Revocation(nil), r.made...)
}

// newRevokingPoller is a watcher with a revocation store whose polls the
// test runs itself, from a second before the events the test adds.
func newRevokingPoller(t *testing.T, h *harness, lifetime time.Duration) (*Watcher, *recordingRevoker) {
	t.Helper()
	rev := newRecordingRevoker(t, h.store)
	savePosition(t, h, time.Now().Add(-time.Minute).UnixMilli())
	return &Watcher{deps: &Deps{Cache: h.store, Keycloak: h.dir, Revocations: rev, RevocationLifetime: lifetime},
		interval: time.Second}, rev
}

// The admin events Keycloak 26.5 and 26.7 record when sessions end (found
// against the real Keycloak: test/integration TestAdminEventsOfSessionEnds)
// become revocations: a sign-out, a disabled or deleted user, every session
// of the user issued up to the event; a deleted session, that session alone.
// Events that end no session revoke nothing.
func TestWatcherRevokesSessionsAnAdminEnds(t *testing.T) {
	type want struct {
		sid, sub, cause string
	}
	cases := []struct {
		name string
		ev   keycloak.AdminEvent
		want *want
	}{
		{"admin signs a user out", keycloak.AdminEvent{OperationType: "ACTION", ResourceType: keycloak.ResourceUser,
			ResourcePath: "users/u-alice/logout"}, &want{sub: "u-alice", cause: RevokedBySignOut}},
		{"admin ends one session", keycloak.AdminEvent{OperationType: "DELETE", ResourceType: keycloak.ResourceUserSession,
			ResourcePath: "sessions/sid-1", Representation: `{"offline":false}`}, &want{sid: "sid-1", cause: RevokedBySessionDeleted}},
		{"admin ends one offline session", keycloak.AdminEvent{OperationType: "DELETE", ResourceType: keycloak.ResourceUserSession,
			ResourcePath: "sessions/sid-2", Representation: `{"offline":true}`}, &want{sid: "sid-2", cause: RevokedBySessionDeleted}},
		{"user disabled", keycloak.AdminEvent{OperationType: "UPDATE", ResourceType: keycloak.ResourceUser,
			ResourcePath: "users/u-alice", Representation: `{"enabled":false}`}, &want{sub: "u-alice", cause: RevokedByUserDisabled}},
		{"user deleted", keycloak.AdminEvent{OperationType: "DELETE", ResourceType: keycloak.ResourceUser,
			ResourcePath: "users/u-alice", Representation: `{"id":"u-alice","username":"alice"}`},
			&want{sub: "u-alice", cause: RevokedByUserDeleted}},
		{"user enabled", keycloak.AdminEvent{OperationType: "UPDATE", ResourceType: keycloak.ResourceUser,
			ResourcePath: "users/u-alice", Representation: `{"enabled":true}`}, nil},
		{"user's name changed", keycloak.AdminEvent{OperationType: "UPDATE", ResourceType: keycloak.ResourceUser,
			ResourcePath: "users/u-alice", Representation: `{"firstName":"Alice"}`}, nil},
		{"user created", keycloak.AdminEvent{OperationType: "CREATE", ResourceType: keycloak.ResourceUser,
			ResourcePath: "users/u-alice"}, nil},
		{"password reset", keycloak.AdminEvent{OperationType: "ACTION", ResourceType: keycloak.ResourceUser,
			ResourcePath: "users/u-alice/reset-password"}, nil},
		{"user's group changed", keycloak.AdminEvent{OperationType: "DELETE", ResourceType: keycloak.ResourceGroupMembership,
			ResourcePath: "users/u-alice/groups/g-1"}, nil},
		{"membership removed", keycloak.AdminEvent{OperationType: "DELETE", ResourceType: keycloak.ResourceOrganizationMembership,
			ResourcePath: "organizations/org-1/members/u-alice"}, nil},
		{"session path without an id", keycloak.AdminEvent{OperationType: "DELETE", ResourceType: keycloak.ResourceUserSession,
			ResourcePath: "sessions/"}, nil},
		{"sign-out path without a user", keycloak.AdminEvent{OperationType: "ACTION", ResourceType: keycloak.ResourceUser,
			ResourcePath: "users//logout"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.dir.addUser("u-alice", true, acme)
			w, rev := newRevokingPoller(t, h, 0)
			at := time.Now().Add(-10 * time.Second).Truncate(time.Millisecond)
			tc.ev.ID, tc.ev.Time = "ev-1", at
			h.dir.addEvent(tc.ev)

			require.NoError(t, w.poll(t.Context()))
			made := rev.revocations()
			if tc.want == nil {
				assert.Empty(t, made)
				return
			}
			require.Len(t, made, 1)
			r := made[0]
			assert.Equal(t, testIssuer, r.Issuer, "the realm the watcher reads")
			assert.Equal(t, tc.want.sid, r.SessionID)
			assert.Equal(t, tc.want.sub, r.Subject)
			assert.True(t, r.At.Equal(at), "at the event's time: %v", r.At)
			assert.WithinDuration(t, time.Now().Add(DefaultRevocationLifetime), r.Until, 5*time.Second)

			before, after := at.Add(-time.Minute), at.Add(time.Minute)
			if tc.want.sid != "" {
				assert.True(t, rev.Revoked(testIssuer, tc.want.sid, "u-alice", before), "the session is refused")
				assert.False(t, rev.Revoked(testIssuer, "sid-other", "u-alice", before), "the user's other sessions are not")
				return
			}
			assert.True(t, rev.Revoked(testIssuer, "sid-any", "u-alice", before), "a token issued before the event is refused")
			assert.True(t, rev.Revoked(testIssuer, "sid-any", "u-alice", at), "and one issued at its time")
			assert.False(t, rev.Revoked(testIssuer, "sid-new", "u-alice", after), "a login after the event is not")
			assert.False(t, rev.Revoked(testIssuer, "sid-any", "u-bob", before), "nor another user")
			assert.False(t, rev.Revoked("https://sso.example.org/realms/other", "sid-any", "u-alice", before),
				"nor the same user id in another realm")
		})
	}
}

// A user update recorded without its body (the realm's "include
// representation" off) is checked with Keycloak: disabled or gone, the
// user's sessions are revoked; a Keycloak failure fails the poll, and the
// event is handled again once Keycloak answers.
func TestWatcherChecksUpdatesRecordedWithoutRepresentation(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-on", true, acme)
	h.dir.addUser("u-off", false, acme)
	w, rev := newRevokingPoller(t, h, 0)
	at := time.Now().Add(-10 * time.Second)
	for _, u := range []string{"u-on", "u-off", "u-gone"} {
		h.dir.addEvent(keycloak.AdminEvent{ID: "ev-" + u, Time: at, OperationType: "UPDATE",
			ResourceType: keycloak.ResourceUser, ResourcePath: "users/" + u})
	}

	h.dir.setFail(errKeycloakDown)
	require.Error(t, w.poll(t.Context()))
	assert.Empty(t, rev.revocations())
	h.dir.setFail(nil)
	require.NoError(t, w.poll(t.Context()))

	var revoked []string
	for _, r := range rev.revocations() {
		revoked = append(revoked, r.Subject)
	}
	assert.ElementsMatch(t, []string{"u-off", "u-gone"}, revoked, "disabled and deleted users, not the enabled one")
	assert.True(t, rev.Revoked(testIssuer, "sid", "u-off", at.Add(-time.Minute)))
	assert.False(t, rev.Revoked(testIssuer, "sid", "u-on", at.Add(-time.Minute)))
}

// A revocation the store refuses fails the poll and keeps the position
// before the event: the next poll revokes it. Without that, a Redis hiccup
// at the wrong moment would let a signed-out session live on.
func TestWatcherRetriesARevocationTheStoreRefused(t *testing.T) {
	h := newHarness(t)
	w, rev := newRevokingPoller(t, h, 0)
	at := time.Now().Add(-10 * time.Second)
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-1", Time: at, OperationType: "ACTION",
		ResourceType: keycloak.ResourceUser, ResourcePath: "users/u-alice/logout"})

	rev.setFail(errors.New("redis: connection refused"))
	err := w.poll(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sign_out")
	assert.False(t, rev.Revoked(testIssuer, "sid", "u-alice", at))

	rev.setFail(nil)
	require.NoError(t, w.poll(t.Context()))
	assert.True(t, rev.Revoked(testIssuer, "sid", "u-alice", at))
	require.NoError(t, w.poll(t.Context()))
	assert.Len(t, rev.revocations(), 1, "handled once the store took it")
}

// RevocationLifetime sets how long a revocation is kept.
func TestWatcherRevocationLifetime(t *testing.T) {
	h := newHarness(t)
	w, rev := newRevokingPoller(t, h, 24*time.Hour)
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-1", Time: time.Now(), OperationType: "DELETE",
		ResourceType: keycloak.ResourceUserSession, ResourcePath: "sessions/sid-1"})
	require.NoError(t, w.poll(t.Context()))
	made := rev.revocations()
	require.Len(t, made, 1)
	assert.WithinDuration(t, time.Now().Add(24*time.Hour), made[0].Until, 5*time.Second)
}

// Without a revocation store the watcher goes on invalidating, and a
// session event is skipped without failing the poll.
func TestWatcherWithoutRevocationStore(t *testing.T) {
	h := newHarness(t)
	w, counter := newPoller(t, h, time.Now().Add(-time.Minute).UnixMilli())
	at := time.Now().Add(-10 * time.Second)
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-1", Time: at, OperationType: "DELETE",
		ResourceType: keycloak.ResourceUserSession, ResourcePath: "sessions/sid-1"})
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-2", Time: at, OperationType: "ACTION",
		ResourceType: keycloak.ResourceUser, ResourcePath: "users/u-alice/logout"})
	require.NoError(t, w.poll(t.Context()))
	assert.Equal(t, 1, counter.of("u-alice"), "the signed-out user's claims are still invalidated")
}

// The running watcher (StartWatcher, as main starts it) revokes a sign-out
// within a few of its intervals.
func TestStartedWatcherRevokesASignOut(t *testing.T) {
	h := newHarness(t)
	rev := newRecordingRevoker(t, h.store)
	deps := Deps{Cache: h.store, Keycloak: h.dir, Revocations: rev}
	w := StartWatcher(&deps, 20*time.Millisecond)
	defer w.Stop()
	time.Sleep(60 * time.Millisecond) // a position is saved

	issued := time.Now().Add(-time.Minute)
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-1", Time: time.Now(), OperationType: "ACTION",
		ResourceType: keycloak.ResourceUser, ResourcePath: "users/u-alice/logout"})
	assert.Eventually(t, func() bool { return rev.Revoked(testIssuer, "sid", "u-alice", issued) },
		2*time.Second, 10*time.Millisecond)
}
