//go:build integration

package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// runnerKeycloak is the runner's Keycloak client (its service
// account), as main builds it.
func runnerKeycloak(t *testing.T) *keycloak.Client {
	t.Helper()
	s := kctest.Env(t)
	kc, err := keycloak.New(&keycloak.Options{URL: s.URL, Realm: s.Realm, ClientID: s.SAClientID, ClientSecret: s.SAClientSecret})
	require.NoError(t, err)
	return kc
}

// sessionEvent is the part of an admin event the watcher acts on.
type sessionEvent struct {
	ResourceType, OperationType, ResourcePath string
}

// sessionEventsOf lists the admin events since from that name user or one of
// sessions, as the watcher's service account reads them (the same resource
// types), and their representations by operation and path ("DELETE sessions/{sid}").
func sessionEventsOf(t *testing.T, kc *keycloak.Client, from time.Time, user string, sessions ...string) ([]sessionEvent, map[string]string) {
	t.Helper()
	evs, err := kc.AdminEvents(t.Context(), keycloak.AdminEventQuery{From: from, Max: 1000, Ascending: true,
		ResourceTypes: []string{keycloak.ResourceUser, keycloak.ResourceUserSession}})
	require.NoError(t, err)
	var out []sessionEvent
	reps := map[string]string{}
	for _, ev := range evs {
		parts := strings.Split(ev.ResourcePath, "/")
		if len(parts) < 2 || parts[1] != user && !slices.Contains(sessions, parts[1]) {
			continue // another test's event: the Keycloak is shared
		}
		out = append(out, sessionEvent{ev.ResourceType, ev.OperationType, ev.ResourcePath})
		reps[ev.OperationType+" "+ev.ResourcePath] = ev.Representation
	}
	return out, reps
}

// The admin events Keycloak records when a session ends, as the watcher's
// service account reads them: what plugins/orgsync/watcher.go (endedSessions)
// turns into revocations. An upgrade of Keycloak that changes them fails
// here. Found on 26.5.6 and 26.7.3 alike:
//
//	admin signs a user out   USER ACTION users/{id}/logout
//	admin ends one session   USER_SESSION DELETE sessions/{sid}, {"offline":false}
//	user logs out            nothing (a user event, LOGOUT)
//	user disabled            USER UPDATE users/{id}, the body sent ({"enabled":false})
//	user deleted             USER DELETE users/{id}
func TestAdminEventsOfSessionEnds(t *testing.T) {
	kc := runnerKeycloak(t)
	user := kctest.CreateUser(t, "sessionevents")
	loggedOut := kctest.Login(t, user.Username, user.Password)
	deleted := kctest.Login(t, user.Username, user.Password)
	kept := kctest.Login(t, user.Username, user.Password)
	sids := []string{loggedOut.SessionID(t), deleted.SessionID(t), kept.SessionID(t)}
	require.ElementsMatch(t, sids, kctest.UserSessions(t, user.ID), "a token's sid is its session's id")

	// The user's own logout at the end-session endpoint records no admin event.
	from := time.Now()
	kctest.LogoutSession(t, loggedOut)
	assert.ElementsMatch(t, sids[1:], kctest.UserSessions(t, user.ID))

	kctest.DeleteSession(t, sids[1])
	assert.Equal(t, sids[2:], kctest.UserSessions(t, user.ID))

	kctest.SignOutUser(t, user.ID)
	assert.Empty(t, kctest.UserSessions(t, user.ID))

	kctest.DisableUser(t, user.ID)
	kctest.DeleteUser(t, user.ID)

	want := []sessionEvent{
		{keycloak.ResourceUserSession, "DELETE", "sessions/" + sids[1]},
		{keycloak.ResourceUser, "ACTION", "users/" + user.ID + "/logout"},
		{keycloak.ResourceUser, "UPDATE", "users/" + user.ID},
		{keycloak.ResourceUser, "DELETE", "users/" + user.ID},
	}
	var got []sessionEvent
	var reps map[string]string
	eventually(t, 5*time.Second, "the admin events recorded", func() bool {
		got, reps = sessionEventsOf(t, kc, from, user.ID, sids...)
		return len(got) >= len(want)
	})
	assert.Equal(t, want, got, "no event for the end-session logout, one for each admin call")
	assert.JSONEq(t, `{"offline":false}`, reps["DELETE sessions/"+sids[1]])
	assert.JSONEq(t, `{"enabled":false}`, reps["UPDATE users/"+user.ID], "the body of the PUT, as sent")
}

// accessClaims are the claims of an access token that say which session
// issued it, and when.
func accessClaims(t *testing.T, s *kctest.Session) (sid, sub string, iat time.Time) {
	t.Helper()
	c := tokenClaims(t, s.AccessToken)
	sid, _ = c["sid"].(string)
	sub, _ = c["sub"].(string)
	n, _ := c["iat"].(float64)
	require.NotEmpty(t, sid, "Keycloak's access tokens carry sid")
	return sid, sub, time.Unix(int64(n), 0)
}

// The watcher, as main starts it (default interval 500 ms) against the real
// Keycloak, revokes what an admin ends within a second: one deleted session
// (the user's other session untouched), then every session of a signed-out
// user, while a login after the sign-out stays valid. Checked at the store:
// the refusal of a request is userinfo's (TestWatcherRevocationRefusedThroughRunner).
func TestWatcherRevokesWhatAnAdminEnds(t *testing.T) {
	kc := runnerKeycloak(t)
	c, err := cache.New(t.Context(), &cache.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	rev, err := cache.NewRevocations(c, cache.RevocationOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rev.Close() })
	w := orgsync.StartWatcher(&orgsync.Deps{Cache: c, Keycloak: kc, Revocations: rev}, 500*time.Millisecond)
	t.Cleanup(w.Stop)
	issuer := kc.Issuer()
	require.Equal(t, kctest.Env(t).Issuer, issuer)

	user := kctest.CreateUser(t, "watchrevoke")
	one, two := kctest.Login(t, user.Username, user.Password), kctest.Login(t, user.Username, user.Password)
	sid1, sub, iat1 := accessClaims(t, one)
	sid2, _, iat2 := accessClaims(t, two)
	require.Equal(t, user.ID, sub)
	require.False(t, rev.Revoked(issuer, sid1, sub, iat1))
	time.Sleep(time.Second) // the watcher's first poll has saved its position

	start := time.Now()
	kctest.DeleteSession(t, sid1)
	eventually(t, 2*time.Second, "the deleted session revoked", func() bool { return rev.Revoked(issuer, sid1, sub, iat1) })
	t.Logf("one session: revoked %d ms after the admin call", time.Since(start).Milliseconds())
	assert.Less(t, time.Since(start), time.Second+500*time.Millisecond, "within the interval and a poll")
	assert.False(t, rev.Revoked(issuer, sid2, sub, iat2), "the user's other session is untouched")

	start = time.Now()
	kctest.SignOutUser(t, user.ID)
	eventually(t, 2*time.Second, "the signed-out user's sessions revoked", func() bool { return rev.Revoked(issuer, sid2, sub, iat2) })
	t.Logf("sign-out: revoked %d ms after the admin call", time.Since(start).Milliseconds())
	assert.Less(t, time.Since(start), time.Second+500*time.Millisecond)
	assert.True(t, rev.Revoked(issuer, "any-other-session", sub, iat2), "every session issued before the sign-out")

	// A token's iat is in whole seconds: a login in a later second than the
	// sign-out is after it.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	again := kctest.Login(t, user.Username, user.Password)
	sid3, _, iat3 := accessClaims(t, again)
	assert.False(t, rev.Revoked(issuer, sid3, sub, iat3), "a login after the sign-out is not revoked")
}

// Through the runner: a request of a session an admin ended is refused with
// 401 session_revoked within a second, through the watcher alone (the
// client has no back-channel logout URL), and the user's other session and
// next login are served. Needs userinfo's revocation check and main handing
// the store to the watcher.
func TestWatcherRevocationRefusedThroughRunner(t *testing.T) {
	e := baseEnv(t, kctest.Env(t).URL)
	delete(e, "KEYCLOAK_EVENTS_INTERVAL") // the default, 500 ms
	r := startRunner(t, e)
	client := plainClient(t)
	route := newRoute(userinfoConfFor(t, client.id, ""))
	user := kctest.CreateUser(t, "revokedrunner")
	one := kctest.LoginClient(t, client.id, client.secret, user.Username, user.Password)
	two := kctest.LoginClient(t, client.id, client.secret, user.Username, user.Password)
	require.Equal(t, 200, r.do(t, route, headersOf(one)).Status)
	require.Equal(t, 200, r.do(t, route, headersOf(two)).Status)
	time.Sleep(time.Second) // the watcher's first poll has saved its position

	start := time.Now()
	kctest.DeleteSession(t, one.SessionID(t))
	eventually(t, 2*time.Second, "the deleted session refused", func() bool { return r.do(t, route, headersOf(one)).Status == 401 })
	t.Logf("one session: refused %d ms after the admin call", time.Since(start).Milliseconds())
	assert.Equal(t, "session_revoked", reasonOf(t, r.do(t, route, headersOf(one))))
	assert.Equal(t, 200, r.do(t, route, headersOf(two)).Status, "the user's other session is served")

	start = time.Now()
	kctest.SignOutUser(t, user.ID)
	eventually(t, 2*time.Second, "the signed-out session refused", func() bool { return r.do(t, route, headersOf(two)).Status == 401 })
	t.Logf("sign-out: refused %d ms after the admin call", time.Since(start).Milliseconds())
	assert.Equal(t, "session_revoked", reasonOf(t, r.do(t, route, headersOf(two))))

	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	again := kctest.LoginClient(t, client.id, client.secret, user.Username, user.Password)
	assert.Equal(t, 200, r.do(t, route, headersOf(again)).Status, "a new login is served")
}

// testClient is a confidential client of the realm made for one test.
type testClient struct{ id, secret string }

// plainClient makes a confidential client with the password grant and no
// back-channel logout URL: sessions of it end at the gateway only through
// the admin-event watcher (or orgsync's account check).
func plainClient(t *testing.T) testClient {
	t.Helper()
	c := testClient{id: fmt.Sprintf("plain-%d", time.Now().UnixNano()), secret: "plain-client-secret"}
	kctest.CreateClient(t, map[string]any{"clientId": c.id, "publicClient": false, "secret": c.secret,
		"directAccessGrantsEnabled": true, "standardFlowEnabled": false})
	return c
}
