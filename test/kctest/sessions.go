package kctest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The ways a session ends in Keycloak, made as an admin or the user makes
// them. What each records as an admin event (Keycloak 26.5 and 26.7):
// SignOutUser USER ACTION users/{id}/logout; DeleteSession USER_SESSION
// DELETE sessions/{sid}; LogoutSession none (a user event, LOGOUT).

// SignOutUser ends every session of the user, as the admin console's "Sign
// out" of a user does (POST users/{id}/logout).
func SignOutUser(t testing.TB, userID string) {
	t.Helper()
	do(t, http.MethodPost, adminURL(t, "users/"+url.PathEscape(userID)+"/logout"), AdminToken(t), "", nil,
		http.StatusNoContent)
}

// DeleteSession ends the one session sessionID (a token's sid), as the
// admin console's "Sign out" of a session does (DELETE sessions/{sid}).
func DeleteSession(t testing.TB, sessionID string) {
	t.Helper()
	do(t, http.MethodDelete, adminURL(t, "sessions/"+url.PathEscape(sessionID)), AdminToken(t), "", nil,
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

// SessionID is the sid claim of the session's access token: the Keycloak
// session id (what UserSessions lists and DeleteSession takes).
func (sess *Session) SessionID(t testing.TB) string {
	t.Helper()
	var claims struct {
		SID string `json:"sid"`
	}
	parts := strings.Split(sess.AccessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("kctest: access token is not a JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err == nil {
		err = json.Unmarshal(b, &claims)
	}
	if err != nil || claims.SID == "" {
		t.Fatalf("kctest: access token without a sid claim: %v", err)
	}
	return claims.SID
}
