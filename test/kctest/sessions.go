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
	s := Env(t)
	sess := PasswordGrant(t, c.ID, c.Secret, username, password, DefaultScope)
	sess.Userinfo = do(t, http.MethodGet, s.Issuer+"/protocol/openid-connect/userinfo", sess.AccessToken, "", nil, http.StatusOK)
	return sess
}

// Logout ends the session at Keycloak's end-session endpoint, the way a
// confidential client does (its refresh token); Keycloak sends the
// back-channel logouts before it answers.
func (c *LogoutClient) Logout(t testing.TB, sess *Session) {
	t.Helper()
	form := url.Values{"client_id": {c.ID}, "client_secret": {c.Secret}, "refresh_token": {sess.RefreshToken}}
	do(t, http.MethodPost, Env(t).Issuer+"/protocol/openid-connect/logout", "", "application/x-www-form-urlencoded",
		strings.NewReader(form.Encode()), http.StatusNoContent)
}

// SessionID is the Keycloak user session of the tokens: the access token's sid.
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

// AdminSignOut signs the user out of every session as an admin does in the
// console (the user's Sessions tab, Sign out), through the admin API.
func AdminSignOut(t testing.TB, userID string) {
	t.Helper()
	do(t, http.MethodPost, adminURL(t, "users/"+url.PathEscape(userID)+"/logout"), AdminToken(t), "", nil, http.StatusNoContent)
}
