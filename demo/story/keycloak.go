package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// keycloak talks to the demo realm the way the actors of the story do: a
// user logging in through APISIX's client, and an admin application (MITx
// Online) changing memberships with the master realm's admin user.
type keycloak struct {
	base  string // e.g. http://127.0.0.1:41414
	realm string
	http  *http.Client

	adminToken   string
	adminExpires time.Time
}

func newKeycloak(base, realm string) *keycloak {
	return &keycloak{base: strings.TrimRight(base, "/"), realm: realm, http: &http.Client{Timeout: 15 * time.Second}}
}

func (k *keycloak) issuer() string { return k.base + "/realms/" + url.PathEscape(k.realm) }

func (k *keycloak) admin(path string) string {
	return k.base + "/admin/realms/" + url.PathEscape(k.realm) + "/" + path
}

// session is what APISIX's openid-connect keeps after a login.
type session struct {
	accessToken  string // forwarded as X-Access-Token
	refreshToken string // what openid-connect's logout hands Keycloak's end-session endpoint
	userinfo     []byte // the realm's userinfo answer, forwarded base64 as X-Userinfo
}

func (s *session) userinfoHeader() string { return base64.StdEncoding.EncodeToString(s.userinfo) }

// login runs the password grant on the APISIX client, then fetches userinfo
// with the access token, as openid-connect does after the browser login.
func (k *keycloak) login(ctx context.Context, clientID, clientSecret, username, password, scope string) (*session, error) {
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
		RefreshToken string `json:"refresh_token"`
	}
	if err := k.callJSON(ctx, http.MethodPost, k.issuer()+"/protocol/openid-connect/token", "",
		"application/x-www-form-urlencoded", strings.NewReader(form.Encode()), http.StatusOK, &tok); err != nil {
		return nil, fmt.Errorf("login %s: %w", username, err)
	}
	st, body, err := k.call(ctx, http.MethodGet, k.issuer()+"/protocol/openid-connect/userinfo", tok.AccessToken, "", nil)
	if err != nil {
		return nil, fmt.Errorf("userinfo of %s: %w", username, err)
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("userinfo of %s: status %d: %s", username, st, body)
	}
	return &session{accessToken: tok.AccessToken, refreshToken: tok.RefreshToken, userinfo: body}, nil
}

// sessionID is the Keycloak session the access token names (its sid).
func (s *session) sessionID() string {
	parts := strings.Split(s.accessToken, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		SID string `json:"sid"`
	}
	_ = json.Unmarshal(b, &claims)
	return claims.SID
}

// logout ends the session at the realm's end-session endpoint with its
// refresh token, as openid-connect's logout_path (or another application's
// logout) does. Keycloak sends its back-channel logouts before it answers.
func (k *keycloak) logout(ctx context.Context, clientID, clientSecret string, s *session) error {
	form := url.Values{"client_id": {clientID}, "client_secret": {clientSecret}, "refresh_token": {s.refreshToken}}
	st, b, err := k.call(ctx, http.MethodPost, k.issuer()+"/protocol/openid-connect/logout", "",
		"application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	if st != http.StatusNoContent {
		return fmt.Errorf("logout: status %d: %s", st, bytes.TrimSpace(b))
	}
	return nil
}

// signOut ends every session of the user, as the admin console's "Sign out"
// of a user does.
func (k *keycloak) signOut(ctx context.Context, userID string) error {
	_, _, err := k.adminCall(ctx, http.MethodPost, "users/"+url.PathEscape(userID)+"/logout", "", nil, http.StatusNoContent)
	return err
}

// sessions lists the ids of the user's Keycloak sessions.
func (k *keycloak) sessions(ctx context.Context, userID string) ([]string, error) {
	b, _, err := k.adminCall(ctx, http.MethodGet, "users/"+url.PathEscape(userID)+"/sessions", "", nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("sessions of %s: %w", userID, err)
	}
	ids := make([]string, 0, len(list))
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return ids, nil
}

// backchannelURL reads the client's back-channel logout URL; the second
// result is the client's internal id, which setBackchannelURL takes.
func (k *keycloak) backchannelURL(ctx context.Context, clientID string) (string, string, error) {
	q := url.Values{"clientId": {clientID}}
	b, _, err := k.adminCall(ctx, http.MethodGet, "clients?"+q.Encode(), "", nil, http.StatusOK)
	if err != nil {
		return "", "", err
	}
	var clients []struct {
		ID         string            `json:"id"`
		ClientID   string            `json:"clientId"`
		Attributes map[string]string `json:"attributes"`
	}
	if err := json.Unmarshal(b, &clients); err != nil {
		return "", "", fmt.Errorf("clients: %w", err)
	}
	for _, c := range clients {
		if c.ClientID == clientID {
			return c.Attributes["backchannel.logout.url"], c.ID, nil
		}
	}
	return "", "", fmt.Errorf("no client %q in realm %s", clientID, k.realm)
}

// setBackchannelURL changes the client's back-channel logout URL and nothing
// else: the whole representation is read and written back, as a partial one
// would reset what it leaves out.
func (k *keycloak) setBackchannelURL(ctx context.Context, id, u string) error {
	b, _, err := k.adminCall(ctx, http.MethodGet, "clients/"+url.PathEscape(id), "", nil, http.StatusOK)
	if err != nil {
		return err
	}
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("client %s: %w", id, err)
	}
	attrs, _ := rep["attributes"].(map[string]any)
	if attrs == nil {
		attrs = map[string]any{}
	}
	attrs["backchannel.logout.url"] = u
	rep["attributes"] = attrs
	body, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_, _, err = k.adminCall(ctx, http.MethodPut, "clients/"+url.PathEscape(id), "application/json", body, http.StatusNoContent)
	return err
}

// token returns a master realm admin token (admin-cli password grant), cached
// until shortly before it expires.
func (k *keycloak) token(ctx context.Context) (string, error) {
	if k.adminToken != "" && time.Now().Before(k.adminExpires) {
		return k.adminToken, nil
	}
	form := url.Values{
		"grant_type": {"password"},
		"client_id":  {"admin-cli"},
		"username":   {"admin"},
		"password":   {"admin"},
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := k.callJSON(ctx, http.MethodPost, k.base+"/realms/master/protocol/openid-connect/token", "",
		"application/x-www-form-urlencoded", strings.NewReader(form.Encode()), http.StatusOK, &tok); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	k.adminToken = tok.AccessToken
	k.adminExpires = time.Now().Add(time.Duration(tok.ExpiresIn)*time.Second - 10*time.Second)
	return k.adminToken, nil
}

// adminCall makes one admin API call and accepts any of the statuses ok.
func (k *keycloak) adminCall(ctx context.Context, method, path, contentType string, body []byte, ok ...int) ([]byte, int, error) {
	tok, err := k.token(ctx)
	if err != nil {
		return nil, 0, err
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	st, out, err := k.call(ctx, method, k.admin(path), tok, contentType, r)
	if err != nil {
		return nil, 0, err
	}
	for _, want := range ok {
		if st == want {
			return out, st, nil
		}
	}
	return nil, st, fmt.Errorf("%s %s: status %d: %s", method, path, st, bytes.TrimSpace(out))
}

func (k *keycloak) userID(ctx context.Context, username string) (string, error) {
	q := url.Values{"username": {username}, "exact": {"true"}}
	b, _, err := k.adminCall(ctx, http.MethodGet, "users?"+q.Encode(), "", nil, http.StatusOK)
	if err != nil {
		return "", err
	}
	var users []struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	}
	if err := json.Unmarshal(b, &users); err != nil {
		return "", fmt.Errorf("users: %w", err)
	}
	for _, u := range users {
		if strings.EqualFold(u.Username, username) {
			return u.ID, nil
		}
	}
	return "", fmt.Errorf("no user %q in realm %s", username, k.realm)
}

// orgIDs maps organization aliases to ids.
func (k *keycloak) orgIDs(ctx context.Context) (map[string]string, error) {
	b, _, err := k.adminCall(ctx, http.MethodGet, "organizations?first=0&max=1000&briefRepresentation=true", "", nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var orgs []struct {
		ID    string `json:"id"`
		Alias string `json:"alias"`
	}
	if err := json.Unmarshal(b, &orgs); err != nil {
		return nil, fmt.Errorf("organizations: %w", err)
	}
	out := map[string]string{}
	for _, o := range orgs {
		out[o.Alias] = o.ID
	}
	return out, nil
}

// addMember adds the user as MITx Online does: POST the bare user id as the
// JSON body. An existing membership (409) counts as done.
func (k *keycloak) addMember(ctx context.Context, orgID, userID string) (int, error) {
	_, st, err := k.adminCall(ctx, http.MethodPost, "organizations/"+url.PathEscape(orgID)+"/members",
		"application/json", []byte(userID), http.StatusCreated, http.StatusConflict)
	return st, err
}

// removeMember removes the user; a missing membership (404) counts as done.
func (k *keycloak) removeMember(ctx context.Context, orgID, userID string) (int, error) {
	_, st, err := k.adminCall(ctx, http.MethodDelete,
		"organizations/"+url.PathEscape(orgID)+"/members/"+url.PathEscape(userID), "", nil,
		http.StatusNoContent, http.StatusNotFound)
	return st, err
}

func (k *keycloak) setEnabled(ctx context.Context, userID string, enabled bool) error {
	body, _ := json.Marshal(map[string]any{"enabled": enabled})
	_, _, err := k.adminCall(ctx, http.MethodPut, "users/"+url.PathEscape(userID), "application/json", body, http.StatusNoContent)
	return err
}

// state is what Keycloak says about the user now: enabled, and the aliases of
// her organizations, sorted.
func (k *keycloak) state(ctx context.Context, userID string) (bool, []string, error) {
	b, _, err := k.adminCall(ctx, http.MethodGet, "users/"+url.PathEscape(userID), "", nil, http.StatusOK)
	if err != nil {
		return false, nil, err
	}
	var u struct {
		Enabled bool `json:"enabled"`
	}
	if err := json.Unmarshal(b, &u); err != nil {
		return false, nil, fmt.Errorf("user %s: %w", userID, err)
	}
	b, _, err = k.adminCall(ctx, http.MethodGet, "organizations/members/"+url.PathEscape(userID)+"/organizations", "", nil, http.StatusOK)
	if err != nil {
		return false, nil, err
	}
	var orgs []struct {
		Alias string `json:"alias"`
	}
	if err := json.Unmarshal(b, &orgs); err != nil {
		return false, nil, fmt.Errorf("organizations of %s: %w", userID, err)
	}
	aliases := make([]string, 0, len(orgs))
	for _, o := range orgs {
		aliases = append(aliases, o.Alias)
	}
	sort.Strings(aliases)
	return u.Enabled, aliases, nil
}

func (k *keycloak) call(ctx context.Context, method, u, token, contentType string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read body: %w", method, redact(u), err)
	}
	return resp.StatusCode, b, nil
}

func (k *keycloak) callJSON(ctx context.Context, method, u, token, contentType string, body io.Reader, want int, out any) error {
	st, b, err := k.call(ctx, method, u, token, contentType, body)
	if err != nil {
		return err
	}
	if st != want {
		return fmt.Errorf("%s %s: status %d: %s", method, redact(u), st, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, redact(u), err)
	}
	return nil
}

func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}
