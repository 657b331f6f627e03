package orgsync

import (
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

func TestParse(t *testing.T) {
	t.Setenv("TEST_ORGSYNC_SECRET", "s3cret")
	cases := []struct {
		name    string
		json    string
		wantErr string
	}{
		{"issue example", `{"fresh_ttl":"30s","stale_ttl":"10m","shape":"auto","on_keycloak_error":"stale","check_account":true}`, ""},
		{"defaults", `{}`, ""},
		{"all claims", `{"claims":["organization","groups","roles"]}`, ""},
		{"invalidate", `{"invalidate":true,"secret_env":"TEST_ORGSYNC_SECRET"}`, ""},
		{"unknown key", `{"fresh_tll":"30s"}`, `unknown key "fresh_tll"`},
		{"fresh_ttl as number", `{"fresh_ttl":30}`, `fresh_ttl`},
		{"stale below fresh", `{"fresh_ttl":"30s","stale_ttl":"5s"}`, `"stale_ttl" "5s" must be >= "fresh_ttl" "30s"`},
		{"fresh_ttl too short", `{"fresh_ttl":"10ms"}`, `"fresh_ttl" "10ms"`},
		{"bad shape", `{"shape":"tree"}`, `"shape" "tree"`},
		{"bad on_keycloak_error", `{"on_keycloak_error":"ignore"}`, `"on_keycloak_error" "ignore"`},
		{"bad claim", `{"claims":["organization","email"]}`, `"claims[1]" "email"`},
		{"claims without organization", `{"claims":["groups"]}`, `must include "organization"`},
		{"duplicate claim", `{"claims":["organization","organization"]}`, `listed twice`},
		{"check_account wrong type", `{"check_account":"yes"}`, `check_account`},
		{"timeout too long", `{"timeout":"1m"}`, `"timeout" "1m0s"`},
		{"invalidate without secret_env", `{"invalidate":true}`, `"secret_env" is required`},
		{"invalidate with unset variable", `{"invalidate":true,"secret_env":"TEST_ORGSYNC_UNSET"}`, `TEST_ORGSYNC_UNSET is not set`},
		{"invalidate with cache keys", `{"invalidate":true,"secret_env":"TEST_ORGSYNC_SECRET","fresh_ttl":"1s"}`, `takes only`},
		{"secret_env without invalidate", `{"secret_env":"TEST_ORGSYNC_SECRET"}`, `go with "invalidate": true only`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse([]byte(tc.json))
			if tc.wantErr == "" {
				require.NoError(t, err)
				require.NotNil(t, c)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.True(t, strings.HasPrefix(err.Error(), "orgsync: "), err.Error())
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := parse([]byte(`{}`))
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, c.FreshTTL.Std())
	assert.Equal(t, 10*time.Minute, c.StaleTTL.Std())
	assert.Equal(t, ShapeAuto, c.Shape)
	assert.Equal(t, OnErrorStale, c.OnKeycloakError)
	assert.True(t, c.checkAccount)
	assert.Equal(t, []string{"organization"}, c.Claims)
	assert.Equal(t, 2*time.Second, c.Timeout.Std())
	assert.False(t, c.groups || c.roles)
}

func TestBadConfigFailsClosed(t *testing.T) {
	p := &Plugin{}
	v, err := p.ParseConf([]byte(`{"fresh_ttl":"1m","stale_ttl":"10s"}`))
	require.NoError(t, err, "never an error: the runner would skip the plugin")
	for i := 0; i < 3; i++ {
		w := httptest.NewRecorder()
		p.RequestFilter(v, w, runnertest.NewRequest(uint32(i), 1, nil))
		assert.Equal(t, http.StatusInternalServerError, w.Code)
		assert.Contains(t, w.Body.String(), "stale_ttl")
	}
}

func TestWithoutKeycloakEveryRequestAnswers500(t *testing.T) {
	old := deps.Load()
	deps.Store(nil)
	t.Cleanup(func() { deps.Store(old) })
	p := &Plugin{}
	v, err := p.ParseConf([]byte(`{}`))
	require.NoError(t, err)
	w := httptest.NewRecorder()
	p.RequestFilter(v, w, runnertest.NewRequest(1, 1, nil))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), "KEYCLOAK_URL")
}

func TestReadmeDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	typ := reflect.TypeOf(Conf{})
	for i := 0; i < typ.NumField(); i++ {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		assert.Contains(t, string(readme), "| "+tag+" |", "README.md lacks a row for %s", tag)
	}
}

func TestApplyKeepsTheRequestShape(t *testing.T) {
	snap := &snapshot{Account: accountActive, Orgs: []org{
		{ID: "o1", Alias: "acme", Attributes: map[string][]string{"tier": {"gold"}}},
		{ID: "o2", Alias: "globex"},
	}}
	cases := []struct {
		confShape string
		had       identity.Shape
		want      string
	}{
		{ShapeAuto, identity.ShapeList, `["acme","globex"]`},
		{ShapeAuto, identity.ShapeMap, `{"acme":{"id":"o1"},"globex":{"id":"o2"}}`},
		{ShapeAuto, identity.ShapeMapAttributes, `{"acme":{"id":"o1","tier":["gold"]},"globex":{"id":"o2"}}`},
		{ShapeAuto, identity.ShapeAbsent, `{"acme":{"id":"o1"},"globex":{"id":"o2"}}`},
		{ShapeAuto, identity.ShapeEmptyObject, `{"acme":{"id":"o1"},"globex":{"id":"o2"}}`},
		{ShapeAuto, identity.ShapeSingle, `["acme","globex"]`},
		{ShapeList, identity.ShapeMap, `["acme","globex"]`},
		{ShapeMap, identity.ShapeList, `{"acme":{"id":"o1"},"globex":{"id":"o2"}}`},
		{ShapeMapAttributes, identity.ShapeList, `{"acme":{"id":"o1","tier":["gold"]},"globex":{"id":"o2"}}`},
	}
	for _, tc := range cases {
		t.Run(tc.confShape+" from "+tc.had.String(), func(t *testing.T) {
			c, err := parse([]byte(`{"shape":"` + tc.confShape + `"}`))
			require.NoError(t, err)
			id := &identity.Identity{Subject: "u", Claims: identity.Claims{}, Orgs: identity.Organizations{Shape: tc.had}}
			c.apply(id, snap)
			assert.JSONEq(t, tc.want, string(id.Orgs.Encode(id.Orgs.Shape)))
		})
	}
}

func TestApplyGroupsAndRoles(t *testing.T) {
	c, err := parse([]byte(`{"claims":["organization","groups","roles"]}`))
	require.NoError(t, err)
	original := identity.Claims{"sub": []byte(`"u"`), "groups": []byte(`["/old"]`)}
	id := &identity.Identity{Subject: "u", Claims: original}
	c.apply(id, &snapshot{Groups: []string{"/staff/editors"}, Roles: []string{"course-admin"}})
	assert.JSONEq(t, `["/staff/editors"]`, string(id.Claims["groups"]))
	assert.JSONEq(t, `{"roles":["course-admin"]}`, string(id.Claims["realm_access"]))
	assert.JSONEq(t, `["/old"]`, string(original["groups"]), "the claims userinfo handed over are not changed in place")
}

func TestUserKeysCoverEveryVariant(t *testing.T) {
	keys := userKeys("u1")
	assert.Len(t, keys, 8)
	for _, a := range []bool{false, true} {
		for _, g := range []bool{false, true} {
			for _, r := range []bool{false, true} {
				assert.Contains(t, keys, cacheKey("u1", a, g, r))
			}
		}
	}
}

// Keycloak is never asked about a sub that no signed token proved: with
// userinfo's verify_token false, orgsync refuses instead of looking it up.
func TestUnverifiedIdentityIsNotLookedUp(t *testing.T) {
	c, err := cache.New(t.Context(), &cache.Options{})
	require.NoError(t, err)
	defer c.Close()
	kc, err := keycloak.New(&keycloak.Options{URL: "http://127.0.0.1:1", Realm: "r", ClientID: "c", ClientSecret: "s"})
	require.NoError(t, err)
	old := deps.Load()
	deps.Store(&Deps{Cache: c, Keycloak: kc})
	t.Cleanup(func() { deps.Store(old) })

	p := &Plugin{}
	v, err := p.ParseConf([]byte(`{}`))
	require.NoError(t, err)
	r := runnertest.NewRequest(42, 4242, nil)
	identity.DefaultChains.Hand(r, &identity.Handoff{Identity: &identity.Identity{Subject: "forged"}})
	w := httptest.NewRecorder()
	p.RequestFilter(v, w, r)
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), "verify_token")
	assert.EqualValues(t, 0, kc.Requests(keycloak.EndpointUserOrganizations)+kc.Requests(keycloak.EndpointUser), "Keycloak was not asked")
}
