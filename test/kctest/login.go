package kctest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// DefaultScope is the scope Login asks for. "organization:*" puts every
// organization of the user in the claim: with the plain "organization" scope,
// Keycloak 26.5 leaves the claim out for a user in two or more organizations
// unless the user picks one in the browser.
const DefaultScope = "openid profile email organization:*"

// Session is what APISIX's openid-connect holds after a login.
type Session struct {
	AccessToken  string // raw JWT: X-Access-Token
	IDToken      string // raw JWT: X-Raw-ID-Token
	RefreshToken string
	// clientID and clientSecret are the client that logged in (LogoutSession ends the session with them).
	clientID, clientSecret string
	// Userinfo is the raw JSON body of the realm's userinfo endpoint, which
	// APISIX forwards as X-Userinfo (base64).
	Userinfo []byte
}

// UserinfoHeader is the X-Userinfo value APISIX would send: standard base64 with padding.
func (s *Session) UserinfoHeader() string { return base64.StdEncoding.EncodeToString(s.Userinfo) }

// UserinfoMap is Userinfo decoded.
func (s *Session) UserinfoMap(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(s.Userinfo, &m); err != nil {
		t.Fatalf("kctest: decode userinfo: %v", err)
	}
	return m
}

// Subject is the "sub" of the userinfo: the Keycloak user id.
func (s *Session) Subject(t testing.TB) string {
	t.Helper()
	sub, _ := s.UserinfoMap(t)["sub"].(string)
	return sub
}

// Login logs username in with the password grant through the apisix client,
// asking for DefaultScope, and fetches userinfo with the access token.
func Login(t testing.TB, username, password string) *Session {
	t.Helper()
	return LoginScope(t, username, password, DefaultScope)
}

// LoginScope is Login with the scope given.
func LoginScope(t testing.TB, username, password, scope string) *Session {
	t.Helper()
	s := Env(t)
	return loginThrough(t, s.ClientID, s.ClientSecret, username, password, scope)
}

// loginThrough is a password grant through the client followed by the
// realm's userinfo call, as openid-connect does at login.
func loginThrough(t testing.TB, clientID, clientSecret, username, password, scope string) *Session {
	t.Helper()
	sess := PasswordGrant(t, clientID, clientSecret, username, password, scope)
	sess.Userinfo = do(t, http.MethodGet, Env(t).Issuer+"/protocol/openid-connect/userinfo", sess.AccessToken, "", nil, http.StatusOK)
	return sess
}

// PasswordGrant gets username's tokens through a confidential client of the
// realm (one made by CreateClient, say), with the scope given. The session
// has no Userinfo: a token that lives one second may be gone before it.
func PasswordGrant(t testing.TB, clientID, clientSecret, username, password, scope string) *Session {
	t.Helper()
	s := Env(t)
	form := url.Values{
		"grant_type":    {"password"},
		"client_id":     {clientID},
		"client_secret": {clientSecret},
		"username":      {username},
		"password":      {password},
		"scope":         {scope},
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		IDToken      string `json:"id_token"`
		RefreshToken string `json:"refresh_token"`
	}
	doJSON(t, http.MethodPost, s.Issuer+"/protocol/openid-connect/token", "", "application/x-www-form-urlencoded",
		strings.NewReader(form.Encode()), http.StatusOK, &tok)
	return &Session{AccessToken: tok.AccessToken, IDToken: tok.IDToken, RefreshToken: tok.RefreshToken,
		clientID: clientID, clientSecret: clientSecret}
}

// Refresh renews the session's tokens with its refresh token, as
// lua-resty-openidc does. Userinfo is left as it was: that is the point.
func (sess *Session) Refresh(t testing.TB) {
	t.Helper()
	s := Env(t)
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"client_id":     {s.ClientID},
		"client_secret": {s.ClientSecret},
		"refresh_token": {sess.RefreshToken},
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		IDToken      string `json:"id_token"`
		RefreshToken string `json:"refresh_token"`
	}
	doJSON(t, http.MethodPost, s.Issuer+"/protocol/openid-connect/token", "", "application/x-www-form-urlencoded",
		strings.NewReader(form.Encode()), http.StatusOK, &tok)
	sess.AccessToken, sess.IDToken = tok.AccessToken, tok.IDToken
	if tok.RefreshToken != "" {
		sess.RefreshToken = tok.RefreshToken
	}
}

// LoginClient is Login through another confidential client of the realm
// (one made by CreateClient, say): its tokens' audience and the sessions'
// back-channel logout are that client's.
func LoginClient(t testing.TB, clientID, clientSecret, username, password string) *Session {
	t.Helper()
	return loginThrough(t, clientID, clientSecret, username, password, DefaultScope)
}
