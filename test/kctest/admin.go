package kctest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

var httpClient = &http.Client{Timeout: 15 * time.Second}

var (
	adminMu      sync.Mutex
	adminToken   string
	adminExpires time.Time
)

// AdminToken returns an access token of the master realm's admin user (admin-cli), cached.
func AdminToken(t testing.TB) string {
	t.Helper()
	s := Env(t)
	adminMu.Lock()
	defer adminMu.Unlock()
	if adminToken != "" && time.Now().Before(adminExpires) {
		return adminToken
	}
	form := url.Values{
		"grant_type": {"password"},
		"client_id":  {"admin-cli"},
		"username":   {s.AdminUser},
		"password":   {s.AdminPassword},
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	doJSON(t, http.MethodPost, s.URL+"/realms/master/protocol/openid-connect/token", "", "application/x-www-form-urlencoded",
		strings.NewReader(form.Encode()), http.StatusOK, &tok)
	adminToken = tok.AccessToken
	adminExpires = time.Now().Add(time.Duration(tok.ExpiresIn)*time.Second - 10*time.Second)
	return adminToken
}

// ServiceAccountToken returns a client-credentials token of the runner's
// service account (identity-runner), fetched anew.
func ServiceAccountToken(t testing.TB) string {
	t.Helper()
	s := Env(t)
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {s.SAClientID},
		"client_secret": {s.SAClientSecret},
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	doJSON(t, http.MethodPost, s.Issuer+"/protocol/openid-connect/token", "", "application/x-www-form-urlencoded",
		strings.NewReader(form.Encode()), http.StatusOK, &tok)
	return tok.AccessToken
}

func adminURL(t testing.TB, path string) string {
	return realmAdminURL(t) + "/" + path
}

func realmAdminURL(t testing.TB) string {
	s := Env(t)
	return s.URL + "/admin/realms/" + url.PathEscape(s.Realm)
}

// TestUser is a user made by CreateUser.
type TestUser struct {
	ID       string
	Username string
	Password string
	Email    string
}

// CreateUser makes a fresh, enabled user with a unique username that starts
// with prefix, a password, a verified email and a name, and deletes it when
// the test ends.
func CreateUser(t testing.TB, prefix string) *TestUser {
	t.Helper()
	u, rep := newTestUser(prefix)
	body, _ := json.Marshal(rep)
	resp := send(t, http.MethodPost, adminURL(t, "users"), AdminToken(t), "application/json", bytes.NewReader(body))
	if resp.status != http.StatusCreated {
		t.Fatalf("kctest: create user %s: status %d: %s", u.Username, resp.status, resp.body)
	}
	loc := resp.header.Get("Location")
	u.ID = loc[strings.LastIndex(loc, "/")+1:]
	t.Cleanup(func() { deleteTestUser(t, u) })
	return u
}

// newTestUser names a user with prefix and a random suffix and gives the
// representation CreateUser and CreateUsers send: enabled, a password, a
// verified email and a name.
func newTestUser(prefix string) (*TestUser, map[string]any) {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := strings.ToLower(prefix) + "-" + hex.EncodeToString(b)
	u := &TestUser{Username: name, Password: name + "-password", Email: name + "@example.org"}
	return u, map[string]any{
		"username": u.Username, "enabled": true, "email": u.Email, "emailVerified": true,
		"firstName": "Test", "lastName": name,
		"credentials": []map[string]any{{"type": "password", "value": u.Password, "temporary": false}},
	}
}

// deleteTestUser is the cleanup of a created user; one the test deleted itself is fine.
func deleteTestUser(t testing.TB, u *TestUser) {
	r := send(t, http.MethodDelete, adminURL(t, "users/"+url.PathEscape(u.ID)), AdminToken(t), "", nil)
	if r.status != http.StatusNoContent && r.status != http.StatusNotFound {
		t.Errorf("kctest: delete user %s: status %d", u.Username, r.status)
	}
}

// CreateUsers makes n users like CreateUser's, through the realm's partial import (a few hundred
// per call instead of one), and deletes them when the test ends. The soak needs thousands:
// one POST per user, each hashing a password, took most of an hour for 10 000.
//
// A bulk import on a Keycloak that has just started (cold JIT, 2 cores) takes far longer than
// one admin call, so each batch gets a deadline sized from its length (importDeadline) instead
// of the client's 15 s, and a batch that fails (timed out, connection lost) is sent again with
// ifResourceExists SKIP: users the first attempt did create are then found by name, not
// created twice, so a retried import is idempotent.
func CreateUsers(t testing.TB, prefix string, n int) []*TestUser {
	t.Helper()
	const batch = 250
	users := make([]*TestUser, 0, n)
	// Registered before the first import so that users of a batch that failed half-way are
	// deleted too (a user without an id is looked up by name).
	t.Cleanup(func() { deleteUsers(t, users) })
	for len(users) < n {
		reps := make([]map[string]any, 0, batch)
		byName := map[string]*TestUser{}
		for range min(batch, n-len(users)) {
			u, rep := newTestUser(prefix)
			byName[u.Username] = u
			reps = append(reps, rep)
		}
		made, err := importUsers(t, adminURL(t, "partialImport"), importDeadline(len(reps)), reps, byName)
		users = append(users, made...)
		if err != nil {
			t.Fatalf("kctest: partial import of %d users: %v", len(reps), err)
		}
	}
	return users
}

// importDeadline is how long one partial import of n users may take: a floor for the call
// itself plus a share per user, generous for a freshly started Keycloak on a small machine
// (500 users took over 15 s there; a warm one imports them in 2-3 s).
func importDeadline(n int) time.Duration {
	return 30*time.Second + time.Duration(n)*200*time.Millisecond
}

// importUsers sends reps as one partial import to importURL, each attempt within deadline, up to three attempts, and returns the users
// of byName that exist afterwards with their ids. The first attempt refuses existing
// resources (FAIL: the names are random, a clash is a bug); a retry skips them, because the
// failed attempt may have created some or all before its answer was lost.
func importUsers(t testing.TB, importURL string, deadline time.Duration, reps []map[string]any,
	byName map[string]*TestUser) ([]*TestUser, error) {
	t.Helper()
	const attempts = 3
	var made []*TestUser
	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		mode := "FAIL"
		if attempt > 1 {
			mode = "SKIP"
		}
		body, _ := json.Marshal(map[string]any{"ifResourceExists": mode, "users": reps})
		r, err := sendWithin(deadline, http.MethodPost, importURL, AdminToken(t),
			"application/json", bytes.NewReader(body))
		switch {
		case err != nil:
			lastErr = err
			t.Logf("kctest: partial import of %d users, attempt %d: %v", len(reps), attempt, err)
			continue
		case r.status != http.StatusOK:
			return made, fmt.Errorf("status %d: %s", r.status, r.body)
		}
		var out struct {
			Results []struct {
				Action       string `json:"action"`
				ResourceType string `json:"resourceType"`
				ResourceName string `json:"resourceName"`
				ID           string `json:"id"`
			} `json:"results"`
		}
		if err := json.Unmarshal(r.body, &out); err != nil {
			return made, fmt.Errorf("decode answer: %w", err)
		}
		for _, res := range out.Results {
			u := byName[res.ResourceName]
			if res.ResourceType != "USER" || u == nil {
				continue
			}
			if res.ID == "" || res.Action == "SKIPPED" {
				// Made by an earlier attempt whose answer was lost: its id is the realm's.
				res.ID = UserIDByUsername(t, u.Username)
			}
			u.ID = res.ID
			made = append(made, u)
			delete(byName, res.ResourceName)
		}
		if len(byName) > 0 {
			return made, fmt.Errorf("%d users not reported as added or skipped", len(byName))
		}
		return made, nil
	}
	// Every attempt failed: keep what did get created, so the cleanup deletes it.
	for name, u := range byName {
		if id, ok := userIDIfExists(t, name); ok {
			u.ID = id
			made = append(made, u)
		}
	}
	return made, fmt.Errorf("%d attempts: %w", attempts, lastErr)
}

// deleteUsers deletes users, eight at a time.
func deleteUsers(t testing.TB, users []*TestUser) {
	eightAtATime(len(users), func(i int) { deleteTestUser(t, users[i]) })
}

// eightAtATime calls fn(0) to fn(n-1), eight calls at a time, and returns when
// all have.
func eightAtATime(n int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

// CheapPasswords sets the realm's password policy to one hash iteration until the test ends
// (then puts the previous policy back). Creating and logging in thousands of users is otherwise
// bound by Keycloak's password hashing (210 000 PBKDF2 iterations each), not by what a test
// measures. Only users whose password is set meanwhile get the cheap hash.
func CheapPasswords(t testing.TB) {
	t.Helper()
	changeRealm(t, func(s *realmSettings) { s.PasswordPolicy = "hashIterations(1)" })
}

// AccessTokenLifespan sets the realm's access token lifespan to d until the test ends (then puts
// the previous one back). A soak logs thousands of users in before its load starts, longer ago
// than the 5 minutes tokens live by default.
func AccessTokenLifespan(t testing.TB, d time.Duration) {
	t.Helper()
	changeRealm(t, func(s *realmSettings) { s.AccessTokenLifespan = int(d.Seconds()) })
}

// realmSettings are the realm's attributes that tests change for their duration.
type realmSettings struct {
	PasswordPolicy      string `json:"passwordPolicy"`
	AccessTokenLifespan int    `json:"accessTokenLifespan"`
}

// changeRealm applies change to the realm's settings until the test ends, then puts back what
// they were (cleanups run last-in first-out, so nested changes unwind in order).
func changeRealm(t testing.TB, change func(*realmSettings)) {
	t.Helper()
	var before realmSettings
	doJSON(t, http.MethodGet, realmAdminURL(t), AdminToken(t), "", nil, http.StatusOK, &before)
	put := func(s realmSettings) {
		body, _ := json.Marshal(s)
		do(t, http.MethodPut, realmAdminURL(t), AdminToken(t), "application/json", bytes.NewReader(body), http.StatusNoContent)
	}
	after := before
	change(&after)
	put(after)
	t.Cleanup(func() { put(before) })
}

// CreateClient creates a client of the realm from its representation (a
// ClientRepresentation as JSON would give it) and deletes it when the test
// ends.
func CreateClient(t testing.TB, rep map[string]any) {
	t.Helper()
	createDeleted(t, "clients", rep)
}

// CreateOrganization creates an enabled organization named alias, with one
// domain, and deletes it when the test ends. It returns its id.
func CreateOrganization(t testing.TB, alias string) string {
	t.Helper()
	return createDeleted(t, "organizations", map[string]any{"name": alias, "alias": alias, "enabled": true,
		"domains": []map[string]any{{"name": alias + ".example.org"}}})
}

// createDeleted POSTs rep to the realm's admin collection and registers the
// DELETE of what it made; it returns the new id (the Location's last part).
func createDeleted(t testing.TB, collection string, rep map[string]any) string {
	t.Helper()
	body, _ := json.Marshal(rep)
	resp := send(t, http.MethodPost, adminURL(t, collection), AdminToken(t), "application/json", bytes.NewReader(body))
	if resp.status != http.StatusCreated {
		t.Fatalf("kctest: create in %s: status %d: %s", collection, resp.status, resp.body)
	}
	loc := resp.header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	t.Cleanup(func() {
		r := send(t, http.MethodDelete, adminURL(t, collection+"/"+url.PathEscape(id)), AdminToken(t), "", nil)
		if r.status != http.StatusNoContent && r.status != http.StatusNotFound {
			t.Errorf("kctest: delete %s/%s: status %d", collection, id, r.status)
		}
	})
	return id
}

// UserIDByUsername returns the id of the user with exactly that username.
func UserIDByUsername(t testing.TB, username string) string {
	t.Helper()
	id, ok := userIDIfExists(t, username)
	if !ok {
		t.Fatalf("kctest: no user %q", username)
	}
	return id
}

// userIDIfExists returns the id of the user with exactly that username, if there is one.
func userIDIfExists(t testing.TB, username string) (string, bool) {
	t.Helper()
	var users []struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	}
	q := url.Values{"username": {username}, "exact": {"true"}}
	doJSON(t, http.MethodGet, adminURL(t, "users?"+q.Encode()), AdminToken(t), "", nil, http.StatusOK, &users)
	for _, u := range users {
		if strings.EqualFold(u.Username, username) {
			return u.ID, true
		}
	}
	return "", false
}

// OrgIDByAlias returns the id of the organization with that alias.
func OrgIDByAlias(t testing.TB, alias string) string {
	t.Helper()
	var orgs []struct {
		ID    string `json:"id"`
		Alias string `json:"alias"`
	}
	// search matches names and domains, not aliases: list them all.
	doJSON(t, http.MethodGet, adminURL(t, "organizations?first=0&max=1000&briefRepresentation=true"), AdminToken(t), "", nil, http.StatusOK, &orgs)
	for _, o := range orgs {
		if o.Alias == alias {
			return o.ID
		}
	}
	t.Fatalf("kctest: no organization with alias %q", alias)
	return ""
}

// orgID accepts an alias or an id.
func orgID(t testing.TB, org string) string {
	if looksLikeUUID(org) {
		return org
	}
	return OrgIDByAlias(t, org)
}

func looksLikeUUID(s string) bool {
	return len(s) == 36 && strings.Count(s, "-") == 4
}

// AddMember adds userID to org (alias or id) the way MITx Online does: POST
// organizations/{org}/members with the bare user id as the JSON body.
func AddMember(t testing.TB, org, userID string) {
	t.Helper()
	if err := addMember(adminURL(t, "organizations/"+url.PathEscape(orgID(t, org))+"/members"), AdminToken(t), userID); err != nil {
		t.Fatalf("kctest: add %s to organization %s: %v", userID, org, err)
	}
}

// AddMembers adds the users to org (alias or id) as AddMember does, eight
// calls at a time, as a script onboarding a customer does.
func AddMembers(t testing.TB, org string, users []*TestUser) {
	t.Helper()
	members, token := adminURL(t, "organizations/"+url.PathEscape(orgID(t, org))+"/members"), AdminToken(t)
	errs := make([]error, len(users))
	eightAtATime(len(users), func(i int) { errs[i] = addMember(members, token, users[i].ID) })
	for i, err := range errs {
		if err != nil {
			t.Fatalf("kctest: add %s to organization %s: %v", users[i].Username, org, err)
		}
	}
}

func addMember(membersURL, token, userID string) error {
	r, err := sendWith(httpClient, http.MethodPost, membersURL, token, "application/json", strings.NewReader(userID))
	if err == nil && r.status != http.StatusCreated {
		err = fmt.Errorf("status %d: %s", r.status, r.body)
	}
	return err
}

// RemoveMember removes userID from org (alias or id).
func RemoveMember(t testing.TB, org, userID string) {
	t.Helper()
	r := send(t, http.MethodDelete, adminURL(t, "organizations/"+url.PathEscape(orgID(t, org))+"/members/"+url.PathEscape(userID)),
		AdminToken(t), "", nil)
	if r.status != http.StatusNoContent {
		t.Fatalf("kctest: remove %s from organization %s: status %d: %s", userID, org, r.status, r.body)
	}
}

// DisableUser disables the user.
func DisableUser(t testing.TB, userID string) { t.Helper(); setEnabled(t, userID, false) }

// EnableUser enables the user.
func EnableUser(t testing.TB, userID string) { t.Helper(); setEnabled(t, userID, true) }

func setEnabled(t testing.TB, userID string, enabled bool) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"enabled": enabled})
	r := send(t, http.MethodPut, adminURL(t, "users/"+url.PathEscape(userID)), AdminToken(t), "application/json", bytes.NewReader(body))
	if r.status != http.StatusNoContent {
		t.Fatalf("kctest: set enabled=%v on user %s: status %d: %s", enabled, userID, r.status, r.body)
	}
}

// DeleteUser deletes the user.
func DeleteUser(t testing.TB, userID string) {
	t.Helper()
	r := send(t, http.MethodDelete, adminURL(t, "users/"+url.PathEscape(userID)), AdminToken(t), "", nil)
	if r.status != http.StatusNoContent {
		t.Fatalf("kctest: delete user %s: status %d: %s", userID, r.status, r.body)
	}
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func send(t testing.TB, method, u, token, contentType string, body io.Reader) result {
	t.Helper()
	r, err := sendWith(httpClient, method, u, token, contentType, body)
	if err != nil {
		t.Fatalf("kctest: %v", err)
	}
	return r
}

// sendWithin is send with its own deadline instead of the client's, for bulk calls; it
// returns the error instead of failing the test, so the caller can retry.
func sendWithin(deadline time.Duration, method, u, token, contentType string, body io.Reader) (result, error) {
	return sendWith(&http.Client{Timeout: deadline}, method, u, token, contentType, body)
}

func sendWith(client *http.Client, method, u, token, contentType string, body io.Reader) (result, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %w", method, redact(u), err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %w", method, redact(u), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: read body: %w", method, redact(u), err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func do(t testing.TB, method, u, token, contentType string, body io.Reader, want int) []byte {
	t.Helper()
	r := send(t, method, u, token, contentType, body)
	if r.status != want {
		t.Fatalf("kctest: %s %s: status %d, want %d: %s", method, redact(u), r.status, want, r.body)
	}
	return r.body
}

func doJSON(t testing.TB, method, u, token, contentType string, body io.Reader, want int, out any) {
	t.Helper()
	b := do(t, method, u, token, contentType, body, want)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("kctest: %s %s: decode: %v", method, redact(u), err)
	}
}

func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}
