package kctest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// LogoutClient is a client of the realm made by CreateLogoutClient: a copy of
// the apisix client whose back-channel logout URL is the test's.
type LogoutClient struct {
	ID     string
	Secret string
}

// CreateLogoutClient makes a confidential client like apisix (password grant,
// the same default scopes) whose logout tokens Keycloak posts to
// backchannelURL, with the session required in them, and deletes it when the
// test ends. A client of its own, not the shared apisix client changed for
// the test: other tests' logouts on the same Keycloak then never reach this
// test's URL, and no test finds apisix changed.
func CreateLogoutClient(t testing.TB, backchannelURL string) *LogoutClient {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	c := &LogoutClient{ID: "bcl-" + hex.EncodeToString(b), Secret: "bcl-secret-" + hex.EncodeToString(b)}
	CreateClient(t, map[string]any{
		"clientId": c.ID, "secret": c.Secret, "enabled": true, "protocol": "openid-connect", "publicClient": false,
		"clientAuthenticatorType": "client-secret", "standardFlowEnabled": true, "directAccessGrantsEnabled": true,
		"redirectUris": []string{"http://127.0.0.1/*"}, "fullScopeAllowed": true,
		"defaultClientScopes": []string{"basic", "web-origins", "acr", "profile", "roles", "email", "organization"},
		"attributes": map[string]string{
			"backchannel.logout.url":                   backchannelURL,
			"backchannel.logout.session.required":      "true",
			"backchannel.logout.revoke.offline.tokens": "false",
		},
	})
	return c
}

// Login logs username in through the client, as Login does through apisix:
// a new Keycloak session each time, with userinfo fetched.
func (c *LogoutClient) Login(t testing.TB, username, password string) *Session {
	t.Helper()
	return LoginClient(t, c.ID, c.Secret, username, password)
}

// Logout ends the session at Keycloak's end-session endpoint, the way a
// confidential client does (its refresh token); Keycloak sends the
// back-channel logouts before it answers.
func (c *LogoutClient) Logout(t testing.TB, sess *Session) {
	t.Helper()
	LogoutSession(t, sess) // sess logged in through c: LogoutSession ends it with c's credentials
}

// SessionID is the Keycloak user session of the tokens: the access token's sid
// (what UserSessions lists and DeleteSession takes).
func (s *Session) SessionID(t testing.TB) string {
	t.Helper()
	parts := strings.Split(s.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatal("kctest: the access token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("kctest: access token payload: %v", err)
	}
	var claims struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.SID == "" {
		t.Fatalf("kctest: the access token carries no sid")
	}
	return claims.SID
}

// DeleteSession ends one user session as an admin does in the console
// (Sessions, Sign out), through the admin API.
func DeleteSession(t testing.TB, sessionID string) {
	t.Helper()
	do(t, http.MethodDelete, adminURL(t, "sessions/"+url.PathEscape(sessionID)), AdminToken(t), "", nil, http.StatusNoContent)
}

// SignOutUser ends every session of the user, as the admin console's "Sign
// out" of a user does (POST users/{id}/logout).
func SignOutUser(t testing.TB, userID string) {
	t.Helper()
	do(t, http.MethodPost, adminURL(t, "users/"+url.PathEscape(userID)+"/logout"), AdminToken(t), "", nil,
		http.StatusNoContent)
}

// UserSessions returns the ids of the user's (online) sessions; they are the
// sid claims of the sessions' tokens.
func UserSessions(t testing.TB, userID string) []string {
	t.Helper()
	var sessions []struct {
		ID string `json:"id"`
	}
	doJSON(t, http.MethodGet, adminURL(t, "users/"+url.PathEscape(userID)+"/sessions"), AdminToken(t), "", nil,
		http.StatusOK, &sessions)
	ids := make([]string, 0, len(sessions))
	for _, s := range sessions {
		ids = append(ids, s.ID)
	}
	return ids
}

// LogoutSession ends sess at the realm's end-session endpoint with its
// refresh token, as a relying party's back-channel-free logout does (POST
// protocol/openid-connect/logout). Keycloak then sends a back-channel logout
// to each client of the session that has a backchannel.logout.url.
func LogoutSession(t testing.TB, sess *Session) {
	t.Helper()
	s := Env(t)
	clientID, secret := sess.clientID, sess.clientSecret
	if clientID == "" {
		clientID, secret = s.ClientID, s.ClientSecret
	}
	form := url.Values{"client_id": {clientID}, "client_secret": {secret}, "refresh_token": {sess.RefreshToken}}
	do(t, http.MethodPost, s.Issuer+"/protocol/openid-connect/logout", "", "application/x-www-form-urlencoded",
		strings.NewReader(form.Encode()), http.StatusNoContent)
}
