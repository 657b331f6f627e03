//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

func orgsyncConf(value string) apisix.PluginConf {
	return apisix.PluginConf{Name: "orgsync", Value: value}
}

func orgAliases(t *testing.T, up http.Header) []string {
	t.Helper()
	v := up.Get("X-User-Orgs")
	if v == "" {
		return []string{}
	}
	out := strings.Split(v, ",")
	sort.Strings(out)
	return out
}

func userinfoOrgs(t *testing.T, up http.Header) any {
	t.Helper()
	return decodeUserinfo(t, up.Get("X-Userinfo"))["organization"]
}

func TestMembershipChangesWithoutRelogin(t *testing.T) {
	s := kctest.Env(t)
	r := startRunner(t, baseEnv(t, s.URL))
	user := kctest.CreateUser(t, "member")
	kctest.AddMember(t, "acme", user.ID)
	sess := kctest.Login(t, user.Username, user.Password) // the one and only login
	globexID := kctest.OrgIDByAlias(t, "globex")

	// The test realm's mapper writes the map shape with attributes; one route
	// keeps it (auto), the other forces the list of aliases.
	listRoute := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"5m","stale_ttl":"10m","shape":"list"}`))
	mapRoute := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"5m","stale_ttl":"10m"}`))

	for i := 0; i < 3; i++ {
		res := r.do(t, listRoute, headersOf(sess))
		require.Equal(t, 200, res.Status, "body %s", res.Body)
		assert.Equal(t, []string{"acme"}, orgAliases(t, res.UpstreamHeader))
	}
	res := r.do(t, mapRoute, headersOf(sess))
	require.Equal(t, 200, res.Status)
	m, ok := userinfoOrgs(t, res.UpstreamHeader).(map[string]any)
	require.True(t, ok, "map shape: %v", userinfoOrgs(t, res.UpstreamHeader))
	assert.Contains(t, m, "acme")

	// An admin adds the user to globex, as MITx Online does: POST the bare id.
	added := time.Now()
	kctest.AddMember(t, globexID, user.ID)
	took := eventually(t, 2*time.Second, "globex visible (events interval 1s + 1s)", func() bool {
		res := r.do(t, listRoute, headersOf(sess))
		return res.Status == 200 && strings.Contains(res.UpstreamHeader.Get("X-User-Orgs"), "globex")
	})
	t.Logf("globex visible %d ms after the admin call", time.Since(added).Milliseconds())
	_ = took

	res = r.do(t, listRoute, headersOf(sess))
	assert.Equal(t, []string{"acme", "globex"}, orgAliases(t, res.UpstreamHeader))
	assert.ElementsMatch(t, []any{"acme", "globex"}, userinfoOrgs(t, res.UpstreamHeader), "list shape kept")
	claims := verifyAssertion(t, r, res.UpstreamHeader.Get("X-Identity-Assertion"))
	assert.Contains(t, claims["organization"], "globex")
	assert.Equal(t, globexID, claims["organization"].(map[string]any)["globex"].(map[string]any)["id"])

	res = r.do(t, mapRoute, headersOf(sess))
	m = userinfoOrgs(t, res.UpstreamHeader).(map[string]any)
	assert.Equal(t, globexID, m["globex"].(map[string]any)["id"], "map shape carries the id")
	assert.Equal(t, []any{"silver"}, m["globex"].(map[string]any)["tier"], "and the attributes, as the mapper wrote them")

	// Removed from acme: gone everywhere, again without a login.
	removed := time.Now()
	kctest.RemoveMember(t, "acme", user.ID)
	eventually(t, 2*time.Second, "acme gone", func() bool {
		res := r.do(t, listRoute, headersOf(sess))
		return res.Status == 200 && !strings.Contains(res.UpstreamHeader.Get("X-User-Orgs"), "acme")
	})
	t.Logf("acme gone %d ms after the admin call", time.Since(removed).Milliseconds())
	res = r.do(t, mapRoute, headersOf(sess))
	assert.NotContains(t, userinfoOrgs(t, res.UpstreamHeader), "acme")

	// The change feed holds both changes.
	feed := readFeed(t, user.ID)
	require.GreaterOrEqual(t, len(feed), 2, "feed: %v", feed)
	var sawAdd, sawRemove bool
	for _, f := range feed {
		sawAdd = sawAdd || strings.Contains(f["added"], "globex")
		sawRemove = sawRemove || strings.Contains(f["removed"], "acme")
		assert.NotEmpty(t, f["at"])
		assert.Equal(t, "keycloak", f["source"])
	}
	assert.True(t, sawAdd, "feed has the addition: %v", feed)
	assert.True(t, sawRemove, "feed has the removal: %v", feed)
}

func readFeed(t *testing.T, user string) []map[string]string {
	t.Helper()
	opts, err := redis.ParseURL(redisURL(t))
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	msgs, err := rdb.XRange(context.Background(), "apisix-identity:feed:orgsync:changes", "-", "+").Result()
	require.NoError(t, err)
	var out []map[string]string
	for _, msg := range msgs {
		f := map[string]string{}
		for k, v := range msg.Values {
			f[k] = fmt.Sprint(v)
		}
		if f["user"] == user {
			out = append(out, f)
		}
	}
	return out
}

func TestDisabledAndDeletedUsersAreRefusedWithinFreshTTL(t *testing.T) {
	s := kctest.Env(t)
	e := baseEnv(t, s.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s" // prove the fresh_ttl bound alone
	r := startRunner(t, e)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"2s","stale_ttl":"10s"}`))

	disabled := kctest.CreateUser(t, "disabled")
	deleted := kctest.CreateUser(t, "deleted")
	dSess := kctest.Login(t, disabled.Username, disabled.Password)
	xSess := kctest.Login(t, deleted.Username, deleted.Password)
	require.Equal(t, 200, r.do(t, route, headersOf(dSess)).Status)
	require.Equal(t, 200, r.do(t, route, headersOf(xSess)).Status)

	kctest.DisableUser(t, disabled.ID)
	kctest.DeleteUser(t, deleted.ID)
	eventually(t, 4*time.Second, "disabled user refused", func() bool {
		return r.do(t, route, headersOf(dSess)).Status == 401
	})
	res := r.do(t, route, headersOf(dSess))
	assert.Equal(t, "account_disabled", reasonOf(t, res))
	eventually(t, 4*time.Second, "deleted user refused", func() bool {
		return r.do(t, route, headersOf(xSess)).Status == 401
	})
	assert.Equal(t, "account_unknown", reasonOf(t, r.do(t, route, headersOf(xSess))))
}

func TestTwoRunnersFiftyConcurrentRequestsAskKeycloakOnce(t *testing.T) {
	proxy := newKeycloakProxy(t)
	e := baseEnv(t, proxy.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	r1 := startRunner(t, e)
	r2 := startRunner(t, e)
	user := kctest.CreateUser(t, "cold")
	kctest.AddMember(t, "acme", user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"5m","stale_ttl":"10m","timeout":"10s"}`))

	var wg sync.WaitGroup
	statuses := make(chan int, 50)
	for i := 0; i < 50; i++ {
		r := r1
		if i%2 == 1 {
			r = r2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := r.do(t, route, headersOf(sess))
			statuses <- res.Status
			if res.Status == 200 {
				assert.Equal(t, "acme", res.UpstreamHeader.Get("X-User-Orgs"))
			}
		}()
	}
	wg.Wait()
	close(statuses)
	for st := range statuses {
		assert.Equal(t, 200, st)
	}
	assert.Equal(t, 1, proxy.orgLookups(user.ID), "50 requests on two runners for a cold user: one Keycloak call")
}

func TestKeycloakOutage(t *testing.T) {
	proxy := newKeycloakProxy(t)
	e := baseEnv(t, proxy.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	r := startRunner(t, e)
	user := kctest.CreateUser(t, "outage")
	kctest.AddMember(t, "globex", user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	stale := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"1s","stale_ttl":"2s","timeout":"1s"}`))
	deny := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"1s","stale_ttl":"2s","timeout":"1s","on_keycloak_error":"deny"}`))

	res := r.do(t, stale, headersOf(sess))
	require.Equal(t, 200, res.Status)
	assert.Equal(t, "keycloak", res.UpstreamHeader.Get("X-User-Orgs-Source"))

	proxy.down.Store(true)
	time.Sleep(2500 * time.Millisecond) // past stale_ttl: Keycloak must be asked, and fails
	res = r.do(t, stale, headersOf(sess))
	require.Equal(t, 200, res.Status, "cached users keep working: %s", res.Body)
	assert.Equal(t, "stale", res.UpstreamHeader.Get("X-User-Orgs-Source"))
	assert.Equal(t, "globex", res.UpstreamHeader.Get("X-User-Orgs"))

	res = r.do(t, deny, headersOf(sess))
	assert.Equal(t, 503, res.Status)
	assert.Equal(t, "keycloak_unavailable", reasonOf(t, res))

	// A user never cached: the token's own claim, marked as such.
	other := kctest.CreateUser(t, "uncached")
	otherSess := kctest.Login(t, other.Username, other.Password)
	res = r.do(t, stale, headersOf(otherSess))
	require.Equal(t, 200, res.Status)
	assert.Equal(t, "token", res.UpstreamHeader.Get("X-User-Orgs-Source"))

	proxy.down.Store(false)
	eventually(t, 15*time.Second, "fresh again after Keycloak is back (cool-off included)", func() bool {
		res := r.do(t, stale, headersOf(sess))
		src := res.UpstreamHeader.Get("X-User-Orgs-Source")
		return res.Status == 200 && (src == "keycloak" || src == "cache")
	})
}

func TestRedisStoppedMidRunNoRequestFails(t *testing.T) {
	port := freePort(t)
	srv := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	require.NoError(t, srv.Start())
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	time.Sleep(300 * time.Millisecond)

	e := baseEnv(t, kctest.Env(t).URL)
	e["REDIS_URL"] = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	r := startRunner(t, e)
	user := kctest.CreateUser(t, "redis")
	kctest.AddMember(t, "acme", user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"1s","stale_ttl":"5s"}`))

	deadline := time.Now().Add(6 * time.Second)
	killed := false
	n := 0
	for time.Now().Before(deadline) {
		if !killed && time.Until(deadline) < 4*time.Second {
			require.NoError(t, srv.Process.Kill())
			killed = true
		}
		res := r.do(t, route, headersOf(sess))
		require.Equal(t, 200, res.Status, "request %d failed while Redis is down: %s", n, res.Body)
		assert.Equal(t, "acme", res.UpstreamHeader.Get("X-User-Orgs"))
		n++
		time.Sleep(50 * time.Millisecond)
	}
	assert.True(t, killed)
	t.Logf("%d requests, Redis killed mid-run, none failed", n)
}

func TestInvalidationEndpoint(t *testing.T) {
	proxy := newKeycloakProxy(t)
	e := baseEnv(t, proxy.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	r := startRunner(t, e)
	user := kctest.CreateUser(t, "inval")
	sess := kctest.Login(t, user.Username, user.Password)
	app := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"10m","stale_ttl":"20m"}`))
	hook := newRoute(orgsyncConf(`{"invalidate":true,"secret_env":"ORGSYNC_WEBHOOK_SECRET"}`))

	res := r.do(t, app, headersOf(sess))
	require.Equal(t, 200, res.Status)
	assert.Equal(t, "", res.UpstreamHeader.Get("X-User-Orgs"))
	kctest.AddMember(t, "initech", user.ID) // no events watcher here: cached for 10m

	res = r.do(t, app, headersOf(sess))
	assert.Equal(t, "", res.UpstreamHeader.Get("X-User-Orgs"), "still cached")

	body := []byte(fmt.Sprintf(`{"user_ids":[%q],"time":%d}`, user.ID, time.Now().UnixMilli()))
	bad := post(t, r, hook, body, "sha256="+strings.Repeat("0", 64))
	assert.Equal(t, 401, bad.Status)
	assert.Equal(t, "bad_signature", reasonOf(t, bad))
	assert.Equal(t, 401, post(t, r, hook, body, "").Status, "unsigned")
	res = r.do(t, app, headersOf(sess))
	assert.Equal(t, "", res.UpstreamHeader.Get("X-User-Orgs"), "a refused call invalidates nothing")

	good := post(t, r, hook, body, sign(body))
	require.Equal(t, 200, good.Status, "body %s", good.Body)
	var answer map[string]map[string][]string
	require.NoError(t, json.Unmarshal(good.Body, &answer))
	assert.Equal(t, []string{user.ID}, answer["invalidated"]["user_ids"])
	res = r.do(t, app, headersOf(sess))
	assert.Equal(t, "initech", res.UpstreamHeader.Get("X-User-Orgs"))

	// The keycloak-events webhook payload of a membership removal.
	kctest.RemoveMember(t, "initech", user.ID)
	event := []byte(fmt.Sprintf(`{"type":"admin.ORGANIZATION_MEMBERSHIP-DELETE","resourcePath":"organizations/%s/members/%s","time":%d}`,
		kctest.OrgIDByAlias(t, "initech"), user.ID, time.Now().UnixMilli()))
	good = post(t, r, hook, event, hex.EncodeToString(mac(event)))
	require.Equal(t, 200, good.Status, "body %s", good.Body)
	res = r.do(t, app, headersOf(sess))
	assert.Equal(t, "", res.UpstreamHeader.Get("X-User-Orgs"))
}

func post(t *testing.T, r *runner, route *apisix.Route, body []byte, signature string) *apisix.Result {
	t.Helper()
	// As an HTTP/1.1 webhook sender posts it: the route reads no body
	// without a Content-Length.
	h := http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(body))}}
	if signature != "" {
		h.Set("X-Keycloak-Signature", signature)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := r.gw.Do(ctx, route, &apisix.Request{Method: http.MethodPost, Path: "/hooks/keycloak", Header: h, Body: body})
	require.NoError(t, err)
	return res
}

func mac(body []byte) []byte {
	m := hmac.New(sha256.New, []byte(webhookSecret))
	m.Write(body)
	return m.Sum(nil)
}

func sign(body []byte) string { return "sha256=" + hex.EncodeToString(mac(body)) }

// With "claims" asking for groups and roles, those are refreshed from
// Keycloak the same way: a role granted after login shows without a new login.
func TestGroupsAndRolesRefreshed(t *testing.T) {
	s := kctest.Env(t)
	r := startRunner(t, baseEnv(t, s.URL))
	user := kctest.CreateUser(t, "roles")
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, `,"claim_headers":{"X-User-Groups":"groups"}`),
		orgsyncConf(`{"claims":["organization","groups","roles"],"fresh_ttl":"5m","stale_ttl":"10m"}`))

	res := r.do(t, route, headersOf(sess))
	require.Equal(t, 200, res.Status, "body %s", res.Body)
	ui := decodeUserinfo(t, res.UpstreamHeader.Get("X-Userinfo"))
	assert.Equal(t, []any{}, ui["groups"])
	assert.NotContains(t, ui["realm_access"].(map[string]any)["roles"], "course-admin")

	admin := kctest.AdminToken(t)
	// Join /staff/editors and take the realm role course-admin, as an admin would.
	groupID := adminJSON(t, admin, http.MethodGet, "/groups?search=editors", nil)
	gid := findGroupID(t, groupID, "/staff/editors")
	adminJSON(t, admin, http.MethodPut, "/users/"+user.ID+"/groups/"+gid, nil)
	role := adminJSON(t, admin, http.MethodGet, "/roles/course-admin", nil)
	adminJSON(t, admin, http.MethodPost, "/users/"+user.ID+"/role-mappings/realm", []any{role})

	eventually(t, 3*time.Second, "group and role visible without a new login", func() bool {
		res := r.do(t, route, headersOf(sess))
		ui := decodeUserinfo(t, res.UpstreamHeader.Get("X-Userinfo"))
		roles, _ := ui["realm_access"].(map[string]any)["roles"].([]any)
		return res.UpstreamHeader.Get("X-User-Groups") == "/staff/editors" && containsAny(roles, "course-admin")
	})
	claims := verifyAssertion(t, r, r.do(t, route, headersOf(sess)).UpstreamHeader.Get("X-Identity-Assertion"))
	assert.Equal(t, []any{"/staff/editors"}, claims["groups"])
}

func containsAny(list []any, want string) bool {
	for _, v := range list {
		if v == want {
			return true
		}
	}
	return false
}

func findGroupID(t *testing.T, groups any, path string) string {
	t.Helper()
	var walk func(any) string
	walk = func(v any) string {
		for _, g := range v.([]any) {
			m := g.(map[string]any)
			if m["path"] == path {
				return m["id"].(string)
			}
			if sub, ok := m["subGroups"].([]any); ok {
				if id := walk(sub); id != "" {
					return id
				}
			}
		}
		return ""
	}
	id := walk(groups)
	require.NotEmpty(t, id, "group %s", path)
	return id
}

func adminJSON(t *testing.T, token, method, path string, body any) any {
	t.Helper()
	s := kctest.Env(t)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+"/admin/realms/"+s.Realm+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Less(t, resp.StatusCode, 300, "%s %s: %s", method, path, b)
	if len(b) == 0 {
		return nil
	}
	var out any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// shape auto is the login's own shape, whatever other logins the runner saw
// (issue 18, item 4; plugins/orgsync/README.md "What shape auto writes"): a
// user whose login claim had no attributes joins an organization with
// attributes, and the app sees the membership at once, with its id and
// without attributes. shape "map_attributes" gives what a fresh login shows.
func TestAutoShapeKeepsTheLoginsShape(t *testing.T) {
	s := kctest.Env(t)
	r := startRunner(t, baseEnv(t, s.URL))
	alias := fmt.Sprintf("plain-%d", time.Now().UnixNano())
	kctest.CreateOrganization(t, alias)

	user := kctest.CreateUser(t, "shape")
	kctest.AddMember(t, alias, user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	claim := sess.UserinfoMap(t)["organization"].(map[string]any)[alias].(map[string]any)
	require.Len(t, claim, 1, "the login's claim has the id only: %v", claim)

	auto := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"5m","stale_ttl":"10m"}`))
	attributes := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"5m","stale_ttl":"10m","shape":"map_attributes"}`))
	// Another login of the realm shows attributes (acme's tier): the mapper adds them.
	other := kctest.CreateUser(t, "shape-other")
	kctest.AddMember(t, "acme", other.ID)
	require.Equal(t, 200, r.do(t, auto, headersOf(kctest.Login(t, other.Username, other.Password))).Status)
	require.Equal(t, 200, r.do(t, auto, headersOf(sess)).Status)

	kctest.AddMember(t, "acme", user.ID)
	var got map[string]any
	eventually(t, 5*time.Second, "acme visible", func() bool {
		res := r.do(t, auto, headersOf(sess))
		got, _ = userinfoOrgs(t, res.UpstreamHeader).(map[string]any)
		return got["acme"] != nil
	})
	acmeID := kctest.OrgIDByAlias(t, "acme")
	assert.Equal(t, map[string]any{"id": acmeID}, got["acme"], "the map without attributes, as the login's claim was")

	res := r.do(t, attributes, headersOf(sess))
	fresh := kctest.Login(t, user.Username, user.Password).UserinfoMap(t)["organization"]
	assert.Equal(t, fresh, userinfoOrgs(t, res.UpstreamHeader), "map_attributes is what a new login shows")
	assert.Equal(t, []any{"gold"}, fresh.(map[string]any)["acme"].(map[string]any)["tier"])
}
