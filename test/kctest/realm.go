package kctest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// AliasIssuer is the test realm's issuer under another name of the same
// Keycloak: localhost for 127.0.0.1, or the other way round. The test
// Keycloak runs with --hostname-strict=false, so a token asked for through
// that name carries it as its iss: another issuer whose users have the same
// ids as the test realm's, as a second Keycloak restored from the first's
// backup would have.
func AliasIssuer(t testing.TB) string {
	t.Helper()
	s := Env(t)
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatalf("kctest: Keycloak URL: %v", err)
	}
	switch u.Hostname() {
	case "127.0.0.1":
		u.Host = "localhost:" + u.Port()
	case "localhost":
		u.Host = "127.0.0.1:" + u.Port()
	default:
		t.Fatalf("kctest: no other name known for the Keycloak host %s", u.Hostname())
	}
	return u.String() + "/realms/" + url.PathEscape(s.Realm)
}

// LoginAt logs username in as Login does, through the issuer given (the
// test realm under another name: AliasIssuer): the tokens and userinfo are
// that issuer's.
func LoginAt(t testing.TB, issuer, username, password string) *Session {
	t.Helper()
	s := Env(t)
	form := url.Values{
		"grant_type":    {"password"},
		"client_id":     {s.ClientID},
		"client_secret": {s.ClientSecret},
		"username":      {username},
		"password":      {password},
		"scope":         {DefaultScope},
	}
	var tok struct {
		AccessToken  string `json:"access_token"`
		IDToken      string `json:"id_token"`
		RefreshToken string `json:"refresh_token"`
	}
	doJSON(t, http.MethodPost, issuer+"/protocol/openid-connect/token", "", "application/x-www-form-urlencoded",
		strings.NewReader(form.Encode()), http.StatusOK, &tok)
	sess := &Session{AccessToken: tok.AccessToken, IDToken: tok.IDToken, RefreshToken: tok.RefreshToken}
	sess.Userinfo = do(t, http.MethodGet, issuer+"/protocol/openid-connect/userinfo", sess.AccessToken, "", nil, http.StatusOK)
	return sess
}
