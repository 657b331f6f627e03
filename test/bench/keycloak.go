package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// keycloakSettings are the test Keycloak's, as scripts/keycloak.sh writes
// them to .work/keycloak.env (the Makefile sources it).
type keycloakSettings struct {
	URL, Realm, Issuer         string
	AdminUser, AdminPassword   string
	ClientID, ClientSecret     string // APISIX's openid-connect client
	SAClientID, SAClientSecret string // the runner's service account
}

func keycloakFromEnv(getenv func(string) string) (*keycloakSettings, error) {
	or := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	s := &keycloakSettings{
		URL:            strings.TrimRight(getenv("KEYCLOAK_TEST_URL"), "/"),
		Realm:          or("KEYCLOAK_TEST_REALM", "olapps"),
		AdminUser:      or("KEYCLOAK_TEST_ADMIN_USER", "admin"),
		AdminPassword:  or("KEYCLOAK_TEST_ADMIN_PASSWORD", "admin"),
		ClientID:       or("KEYCLOAK_TEST_CLIENT_ID", "apisix"),
		ClientSecret:   or("KEYCLOAK_TEST_CLIENT_SECRET", "apisix-test-secret"),
		SAClientID:     or("KEYCLOAK_TEST_SA_CLIENT_ID", "identity-runner"),
		SAClientSecret: or("KEYCLOAK_TEST_SA_CLIENT_SECRET", "identity-runner-test-secret"),
	}
	if s.URL == "" {
		return nil, fmt.Errorf("no test Keycloak: KEYCLOAK_TEST_URL is not set and .work/keycloak.env has none (scripts/keycloak.sh start)")
	}
	s.Issuer = s.URL + "/realms/" + s.Realm
	return s, nil
}

// envWithFile reads the environment, and when KEYCLOAK_TEST_URL is unset the
// env file scripts/keycloak.sh writes (KEYCLOAK_TEST_ENV_FILE, default
// <repo>/.work/keycloak.env), as test/kctest does.
func envWithFile(root string) func(string) string {
	if os.Getenv("KEYCLOAK_TEST_URL") != "" {
		return os.Getenv
	}
	path := os.Getenv("KEYCLOAK_TEST_ENV_FILE")
	if path == "" {
		path = filepath.Join(root, ".work", "keycloak.env")
	}
	vals := map[string]string{}
	if b, err := os.ReadFile(path); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				vals[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
			}
		}
	}
	return func(k string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return vals[k]
	}
}

// admin talks to the Keycloak admin API as the master realm's admin, the way
// an application manages users and memberships.
type admin struct {
	s    *keycloakSettings
	http *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
}

func newAdmin(s *keycloakSettings) *admin {
	return &admin{s: s, http: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32}}}
}

func (a *admin) adminToken(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && time.Now().Before(a.expires) {
		return a.token, nil
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	form := url.Values{"grant_type": {"password"}, "client_id": {"admin-cli"},
		"username": {a.s.AdminUser}, "password": {a.s.AdminPassword}}
	if err := a.form(ctx, a.s.URL+"/realms/master/protocol/openid-connect/token", form, &tok); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	a.token = tok.AccessToken
	a.expires = time.Now().Add(time.Duration(tok.ExpiresIn)*time.Second - 15*time.Second)
	return a.token, nil
}

func (a *admin) form(ctx context.Context, u string, form url.Values, out any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// call runs one admin API call under /admin/realms/<realm>/ and returns the
// response when its status is want.
func (a *admin) call(ctx context.Context, method, path string, body any, want int) (*http.Response, []byte, error) {
	tok, err := a.adminToken(ctx)
	if err != nil {
		return nil, nil, err
	}
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequestWithContext(ctx, method, a.s.URL+"/admin/realms/"+url.PathEscape(a.s.Realm)+"/"+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return nil, nil, fmt.Errorf("%s %s: status %d: %.200s", method, path, resp.StatusCode, b)
	}
	return resp, b, nil
}

// createUser makes an enabled user with a verified email; a password only
// when one is given (hashing it is Keycloak's most expensive step, and only
// the user who logs in needs one). It returns the user id.
func (a *admin) createUser(ctx context.Context, username, password string) (string, error) {
	u := map[string]any{"username": username, "enabled": true, "email": username + "@example.org",
		"emailVerified": true, "firstName": "Bench", "lastName": username}
	if password != "" {
		u["credentials"] = []map[string]any{{"type": "password", "value": password, "temporary": false}}
	}
	resp, _, err := a.call(ctx, http.MethodPost, "users", u, http.StatusCreated)
	if err != nil {
		return "", err
	}
	loc := resp.Header.Get("Location")
	return loc[strings.LastIndex(loc, "/")+1:], nil
}

func (a *admin) deleteUser(ctx context.Context, id string) error {
	_, _, err := a.call(ctx, http.MethodDelete, "users/"+url.PathEscape(id), nil, http.StatusNoContent)
	return err
}

// usersWithPrefix lists the ids of users whose username starts with prefix
// (left over by an interrupted run).
func (a *admin) usersWithPrefix(ctx context.Context, prefix string) ([]string, error) {
	q := url.Values{"search": {prefix}, "max": {"5000"}, "briefRepresentation": {"true"}}
	_, b, err := a.call(ctx, http.MethodGet, "users?"+q.Encode(), nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var users []struct{ ID, Username string }
	if err := json.Unmarshal(b, &users); err != nil {
		return nil, err
	}
	var ids []string
	for _, u := range users {
		if strings.HasPrefix(u.Username, prefix) {
			ids = append(ids, u.ID)
		}
	}
	return ids, nil
}

func (a *admin) orgID(ctx context.Context, alias string) (string, error) {
	_, b, err := a.call(ctx, http.MethodGet, "organizations?first=0&max=1000&briefRepresentation=true", nil, http.StatusOK)
	if err != nil {
		return "", err
	}
	var orgs []struct{ ID, Alias string }
	if err := json.Unmarshal(b, &orgs); err != nil {
		return "", err
	}
	for _, o := range orgs {
		if o.Alias == alias {
			return o.ID, nil
		}
	}
	return "", fmt.Errorf("no organization %q in realm %s", alias, a.s.Realm)
}

func (a *admin) addMember(ctx context.Context, orgID, userID string) error {
	_, _, err := a.call(ctx, http.MethodPost, "organizations/"+orgID+"/members", userID, http.StatusCreated)
	return err
}

func (a *admin) removeMember(ctx context.Context, orgID, userID string) error {
	_, _, err := a.call(ctx, http.MethodDelete, "organizations/"+orgID+"/members/"+userID, nil, http.StatusNoContent)
	return err
}

// session is what APISIX's openid-connect holds after a login.
type session struct {
	accessToken string
	idToken     string
	userinfo    []byte // the userinfo endpoint's JSON
	sub         string
	expires     time.Time
}

// login logs a user in with the password grant through APISIX's client and
// fetches userinfo, as openid-connect does once per login.
func (a *admin) login(ctx context.Context, username, password string) (*session, error) {
	var tok struct {
		AccessToken string `json:"access_token"`
		IDToken     string `json:"id_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	form := url.Values{"grant_type": {"password"}, "client_id": {a.s.ClientID}, "client_secret": {a.s.ClientSecret},
		"username": {username}, "password": {password}, "scope": {"openid profile email organization:*"}}
	if err := a.form(ctx, a.s.Issuer+"/protocol/openid-connect/token", form, &tok); err != nil {
		return nil, fmt.Errorf("login %s: %w", username, err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.s.Issuer+"/protocol/openid-connect/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("userinfo %s: %w", username, err)
	}
	defer resp.Body.Close()
	ui, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("userinfo %s: status %d", username, resp.StatusCode)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(ui, &claims); err != nil || claims.Sub == "" {
		return nil, fmt.Errorf("userinfo %s: no sub", username)
	}
	return &session{accessToken: tok.AccessToken, idToken: tok.IDToken, userinfo: ui, sub: claims.Sub,
		expires: time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second)}, nil
}
