//go:build integration

package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// backchannelFront plays APISIX's HTTP side for the back-channel logout
// route: Keycloak POSTs the logout token to it, and it hands the request to
// the runner over the plugin runner protocol, as APISIX's ext-plugin does,
// answering Keycloak with the runner's answer.
type backchannelFront struct {
	*httptest.Server
	route *apisix.Route

	mu       sync.Mutex
	received []receivedLogout
}

type receivedLogout struct {
	token  string // the logout_token Keycloak sent
	status int    // the runner's answer
	body   string
	// answered is when the runner's answer reached the front, before
	// Keycloak gets it: the moment the fleet test counts from.
	answered time.Time
}

func newBackchannelFront(t *testing.T, r *runner) *backchannelFront {
	t.Helper()
	return newBackchannelFrontTo(t, r.gw)
}

// newBackchannelFrontTo is a front handing the logout tokens to the runner
// behind gw.
func newBackchannelFrontTo(t *testing.T, gw *apisix.Gateway) *backchannelFront {
	t.Helper()
	f := &backchannelFront{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h := req.Header.Clone()
		h.Set("Content-Length", strconv.Itoa(len(body)))
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		defer cancel()
		res, err := gw.Do(ctx, f.route, &apisix.Request{Method: req.Method, Path: req.URL.Path, Header: h,
			SrcIP: "127.0.0.1", Body: body})
		answered := time.Now()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		form, _ := url.ParseQuery(string(body))
		f.mu.Lock()
		f.received = append(f.received, receivedLogout{token: form.Get("logout_token"), status: res.Status, body: string(res.Body),
			answered: answered})
		f.mu.Unlock()
		for k, v := range res.ResponseHeader {
			w.Header()[k] = v
		}
		w.WriteHeader(res.Status)
		_, _ = w.Write(res.Body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *backchannelFront) all() []receivedLogout {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]receivedLogout(nil), f.received...)
}

// post sends a form to the route as Keycloak would.
func (f *backchannelFront) post(t *testing.T, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.Post(f.URL+"/identity/backchannel-logout", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func jwtParts(t *testing.T, raw string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	require.Len(t, parts, 3)
	for i, out := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, out))
	}
	return header, claims
}

type logoutSetup struct {
	r      *runner
	front  *backchannelFront
	client *kctest.LogoutClient
	app    *apisix.Route
	user   *kctest.TestUser
}

func setupLogout(t *testing.T) *logoutSetup {
	t.Helper()
	s := kctest.Env(t)
	r := startRunner(t, baseEnv(t, s.URL))
	front := newBackchannelFront(t, r)
	client := kctest.CreateLogoutClient(t, front.URL+"/identity/backchannel-logout")
	front.route = newRoute(apisix.PluginConf{Name: "userinfo", Value: fmt.Sprintf(
		`{"backchannel_logout":true,"issuer":%q,"audience":%q}`, s.Issuer, client.ID)})
	return &logoutSetup{r: r, front: front, client: client,
		app:  newRoute(userinfoConfFor(t, client.ID, `,"on_revoked":{"redirect":"/logout"}`)),
		user: kctest.CreateUser(t, "bcl")}
}

// api and browser are the same session's requests as an API client and as
// a browser navigating.
func api(sess *kctest.Session) map[string]string {
	h := headersOf(sess)
	h["accept"] = "application/json"
	return h
}

func browser(sess *kctest.Session) map[string]string {
	h := headersOf(sess)
	h["accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"
	h["sec-fetch-mode"] = "navigate"
	return h
}

func TestBackchannelLogoutAtEndSessionEndpoint(t *testing.T) {
	ls := setupLogout(t)
	ended := ls.client.Login(t, ls.user.Username, ls.user.Password)
	other := ls.client.Login(t, ls.user.Username, ls.user.Password)
	require.NotEqual(t, ended.SessionID(t), other.SessionID(t))
	for _, sess := range []*kctest.Session{ended, other} {
		res := ls.r.do(t, ls.app, api(sess))
		require.Equal(t, 200, res.Status, "body: %s", res.Body)
		require.True(t, res.Upstream)
	}

	// Keycloak posts the logout token before the logout call returns.
	ls.client.Logout(t, ended)
	got := ls.front.all()
	require.Len(t, got, 1, "one logout token for the one session")
	assert.Equal(t, http.StatusOK, got[0].status, "the runner accepted Keycloak's logout token: %s", got[0].body)
	header, claims := jwtParts(t, got[0].token)
	t.Logf("Keycloak's logout token: header %v, claims typ=%v keys=%v, exp-iat=%vs", header, claims["typ"], keysOf(claims),
		claims["exp"].(float64)-claims["iat"].(float64))
	assert.Equal(t, ended.SessionID(t), claims["sid"])
	assert.Equal(t, ls.user.ID, claims["sub"])

	res := ls.r.do(t, ls.app, api(ended))
	assert.Equal(t, 401, res.Status, "an API call of the ended session")
	assert.Equal(t, "session_revoked", reasonOf(t, res))
	assert.False(t, res.Upstream)
	res = ls.r.do(t, ls.app, browser(ended))
	assert.Equal(t, http.StatusFound, res.Status, "a browser of the ended session goes to a fresh login")
	assert.Equal(t, "/logout", res.ResponseHeader.Get("Location"))
	assert.False(t, res.Upstream)

	res = ls.r.do(t, ls.app, api(other))
	assert.Equal(t, 200, res.Status, "the user's other session is untouched: %s", res.Body)
	assert.True(t, res.Upstream)

	// Keycloak's own token, sent again: refused, as a replay.
	status, body := ls.front.post(t, url.Values{"logout_token": {got[0].token}})
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "token_replayed")
	// Keycloak's token with a second logout_token: refused whole.
	status, _ = ls.front.post(t, url.Values{"logout_token": {got[0].token, got[0].token}})
	assert.Equal(t, http.StatusBadRequest, status)
	// An access token of the realm never passes as a logout token.
	status, body = ls.front.post(t, url.Values{"logout_token": {other.AccessToken}})
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "token_wrong_type")
	status, body = ls.front.post(t, url.Values{"logout_token": {other.IDToken}})
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "token_wrong_type")
	res = ls.r.do(t, ls.app, api(other))
	assert.Equal(t, 200, res.Status, "refused logout tokens revoked nothing")
}

func TestBackchannelLogoutWhenAdminDeletesTheSession(t *testing.T) {
	ls := setupLogout(t)
	ended := ls.client.Login(t, ls.user.Username, ls.user.Password)
	other := ls.client.Login(t, ls.user.Username, ls.user.Password)
	require.Equal(t, 200, ls.r.do(t, ls.app, api(ended)).Status)

	kctest.DeleteSession(t, ended.SessionID(t))
	got := ls.front.all()
	require.Len(t, got, 1, "Keycloak sends a back-channel logout for an admin's deletion of one session")
	assert.Equal(t, http.StatusOK, got[0].status, got[0].body)

	res := ls.r.do(t, ls.app, api(ended))
	assert.Equal(t, 401, res.Status)
	assert.Equal(t, "session_revoked", reasonOf(t, res))
	res = ls.r.do(t, ls.app, browser(ended))
	assert.Equal(t, http.StatusFound, res.Status)
	assert.Equal(t, 200, ls.r.do(t, ls.app, api(other)).Status, "the other session passes")
}

// An admin's "Sign out" of a user: Keycloak 26.5.6 sends a logout token
// for one of the user's sessions only (seen here with two sessions of one
// client), so the back-channel alone does not end them all: the admin-event
// watcher revokes the subject for that event. What Keycloak does send is
// honoured.
func TestBackchannelLogoutWhenAdminSignsTheUserOut(t *testing.T) {
	ls := setupLogout(t)
	sessions := map[string]*kctest.Session{}
	for range 2 {
		s := ls.client.Login(t, ls.user.Username, ls.user.Password)
		sessions[s.SessionID(t)] = s
	}
	bystander := kctest.CreateUser(t, "bcl-other")
	unrelated := ls.client.Login(t, bystander.Username, bystander.Password)

	kctest.SignOutUser(t, ls.user.ID)
	got := ls.front.all()
	require.NotEmpty(t, got, "Keycloak sends back-channel logouts for an admin's sign-out")
	t.Logf("admin sign-out of a user with %d sessions: %d logout tokens", len(sessions), len(got))
	for _, l := range got {
		require.Equal(t, http.StatusOK, l.status, l.body)
		_, claims := jwtParts(t, l.token)
		sess, ok := sessions[fmt.Sprint(claims["sid"])]
		require.True(t, ok, "the logout token names one of the user's sessions")
		res := ls.r.do(t, ls.app, api(sess))
		assert.Equal(t, 401, res.Status)
		assert.Equal(t, "session_revoked", reasonOf(t, res))
	}
	assert.Equal(t, 200, ls.r.do(t, ls.app, api(unrelated)).Status, "another user's session passes")
	// The watcher (on here) revokes the subject as of the sign-out, and a
	// token's iat is in whole seconds: a login in the same second counts as
	// before it (TestWatcherRevocationRefusedThroughRunner waits the same way).
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	fresh := ls.client.Login(t, ls.user.Username, ls.user.Password)
	assert.Equal(t, 200, ls.r.do(t, ls.app, api(fresh)).Status, "a login after the sign-out passes")
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
