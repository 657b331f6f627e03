package orgsync

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
)

func TestParse(t *testing.T) {
	t.Setenv("TEST_ORGSYNC_SECRET", testSecret)
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
		{"invalidate with unset variable", `{"invalidate":true,"secret_env":"TEST_ORGSYNC_UNSET_SECRET"}`, `TEST_ORGSYNC_UNSET_SECRET is not set`},
		{"invalidate with cache keys", `{"invalidate":true,"secret_env":"TEST_ORGSYNC_SECRET","fresh_ttl":"1s"}`, `takes only`},
		{"secret_env without invalidate", `{"secret_env":"TEST_ORGSYNC_SECRET"}`, `go with "invalidate": true only`},
		{"secret_env naming a public variable", `{"invalidate":true,"secret_env":"APISIX_CONF_EXPIRE_TIME"}`, `_SECRET`},
		{"secret_env naming the Keycloak secret", `{"invalidate":true,"secret_env":"KEYCLOAK_CLIENT_SECRET"}`, `another credential`},
		{"zero fresh_ttl is refused, not defaulted", `{"fresh_ttl":"0s"}`, `"fresh_ttl" "0s"`},
		{"empty shape is refused, not defaulted", `{"shape":""}`, `"shape" ""`},
		{"empty claims list", `{"claims":[]}`, `must include "organization"`},
		{"key in other case", `{"Fresh_TTL":"30s"}`, `case-sensitive`},
		{"duplicate key", `{"check_account":true,"check_account":false}`, `twice`},
		{"zero max_age", `{"invalidate":true,"secret_env":"TEST_ORGSYNC_SECRET","max_age":"0s"}`, `"max_age"`},
		{"zero rate_limit", `{"invalidate":true,"secret_env":"TEST_ORGSYNC_SECRET","rate_limit":0}`, `"rate_limit" 0`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Deps{}).parse([]byte(tc.json))
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

// Every value problem of a conf, the access rule's included; a check on a
// value already refused is skipped (stale_ttl against a bad fresh_ttl).
func TestEveryProblemOfAConf(t *testing.T) {
	_, err := New(Deps{}).parse([]byte(`{"fresh_ttl":"48h","shape":"tree","timeout":"1m",` +
		`"claims":["organization","email"],"require":{"realm_role":"admin"},"tenant":{"path":"/orgs/{org}","by":"name"}}`))
	require.Error(t, err)
	joined, ok := err.(interface{ Unwrap() []error })
	require.True(t, ok, "the problems are joined, each its own: %v", err)
	var got []string
	for _, e := range joined.Unwrap() {
		got = append(got, e.Error())
	}
	assert.Equal(t, []string{
		`orgsync: "fresh_ttl" "48h0m0s": want between "1s" and "24h"`,
		`orgsync: "shape" "tree": want "auto", "list", "map" or "map_attributes"`,
		`orgsync: "timeout" "1m0s": want between "100ms" and "30s"`,
		`orgsync: "claims[1]" "email": want "organization", "groups", "roles", "organization_groups" or "client_roles"`,
		`orgsync: "tenant.by" "name": want "alias" or "id"`,
	}, got)

	// The rule parses: what it reads is checked against the claims, beside the rest.
	_, err = New(Deps{}).parse([]byte(`{"on_keycloak_error":"retry","require":{"realm_role":"admin"}}`))
	require.Error(t, err)
	assert.Equal(t, `orgsync: "on_keycloak_error" "retry": want "stale" or "deny"`+"\n"+
		`orgsync: "require" reads realm roles: add "roles" to "claims"`, err.Error())
}

func TestDefaults(t *testing.T) {
	c, err := New(Deps{}).parse([]byte(`{}`))
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

const testSecret = "3c9a7e5d1f0b8264ad7e9c1b5f3a0d28"

func TestBadConfigFailsClosed(t *testing.T) {
	p := New(Deps{})
	v, err := p.ParseConf([]byte(`{"fresh_ttl":"1m","stale_ttl":"10s"}`))
	require.NoError(t, err, "never an error: the runner would skip the plugin")
	for i := 0; i < 3; i++ {
		w := httptest.NewRecorder()
		p.RequestFilter(v, w, runnertest.NewRequest(uint32(i), 1, nil))
		assert.Equal(t, http.StatusInternalServerError, w.Code)
		assert.Contains(t, w.Body.String(), ReasonMisconfigured)
	}
}

func TestWithoutKeycloakEveryRequestAnswers500(t *testing.T) {
	p := New(Deps{})
	v, err := p.ParseConf([]byte(`{}`))
	require.NoError(t, err)
	w := httptest.NewRecorder()
	p.RequestFilter(v, w, runnertest.NewRequest(1, 1, nil))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Contains(t, w.Body.String(), ReasonMisconfigured)
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
			c, err := New(Deps{}).parse([]byte(`{"shape":"` + tc.confShape + `"}`))
			require.NoError(t, err)
			id := loginWith(identity.Claims{"sub": mustJSON("u"), identity.ClaimOrganization: claimOfShape[tc.had]})
			require.Equal(t, tc.had, id.OrgsShape())
			shape := c.shape
			if shape == identity.ShapeAbsent {
				shape = autoShape(tc.had)
			}
			orgs := c.apply(id, snap, shape).Orgs()
			assert.JSONEq(t, tc.want, string(orgs.Encode(orgs.Shape)))
		})
	}
}

// claimOfShape is an organization claim in each shape (nil: absent).
var claimOfShape = map[identity.Shape]json.RawMessage{
	identity.ShapeList:          json.RawMessage(`["acme"]`),
	identity.ShapeMap:           json.RawMessage(`{"acme":{"id":"o1"}}`),
	identity.ShapeMapAttributes: json.RawMessage(`{"acme":{"id":"o1","tier":["gold"]}}`),
	identity.ShapeEmptyObject:   json.RawMessage(`{}`),
	identity.ShapeSingle:        json.RawMessage(`"acme"`),
	identity.ShapeAbsent:        json.RawMessage(`null`),
}

func TestApplyGroupsAndRoles(t *testing.T) {
	c, err := New(Deps{}).parse([]byte(`{"claims":["organization","groups","roles"]}`))
	require.NoError(t, err)
	original := loginWith(identity.Claims{"sub": []byte(`"u"`), "groups": []byte(`["/old"]`)})
	id := c.apply(original, &snapshot{Groups: []string{"/staff/editors"}, Roles: []string{"course-admin"}}, identity.ShapeMap)
	groups, _ := id.Claim("groups")
	access, _ := id.Claim("realm_access")
	assert.JSONEq(t, `["/staff/editors"]`, string(groups))
	assert.JSONEq(t, `{"roles":["course-admin"]}`, string(access))
	old, _ := original.Claim("groups")
	assert.JSONEq(t, `["/old"]`, string(old), "the identity userinfo handed over is not changed")
	assert.Equal(t, original.Login(), id.Login(), "the refreshed identity is the same login's")
}

func TestUserKeysCoverEveryVariant(t *testing.T) {
	keys := userKeys("olapps", "u1")
	assert.Len(t, keys, 1<<variantBits)
	p := New(Deps{})
	seen := map[string]bool{}
	// Every route config's key is among those an invalidation drops, and
	// no two configs that hold different data share one.
	for bits := 0; bits < 1<<variantBits; bits++ {
		claims := []string{`"organization"`}
		for i, name := range []string{ClaimGroups, ClaimRoles, ClaimOrganizationGroups, ClaimClientRoles} {
			if bits&(2<<i) != 0 {
				claims = append(claims, `"`+name+`"`)
			}
		}
		route := fmt.Sprintf(`{"check_account":%t,"shape":"map","claims":[%s]}`, bits&1 != 0, strings.Join(claims, ","))
		v, err := p.ParseConf([]byte(route))
		require.NoError(t, err)
		c := v.(*Conf)
		require.NoError(t, c.Err(), route)
		key := variantKey("olapps", "u1", c.variant())
		assert.Contains(t, keys, key, route)
		assert.False(t, seen[key], "two variants share %s", key)
		seen[key] = true
	}
	assert.NotEqual(t, cacheKey("realm-a", "u1", true, false, false), cacheKey("realm-b", "u1", true, false, false),
		"two realms never share an entry")
}
