package orgsync

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/access"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logtest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
)

// doAt runs one request of id through conf with the path APISIX sends
// ($uri), the vars it answers, and headers.
func (h *harness) doAt(conf any, id *identity.Identity, path string, vars, headers map[string]string) (*httptest.ResponseRecorder, *runnertest.Request) {
	h.t.Helper()
	r := runnertest.NewRequest(requestIDs.Add(1), 1, headers)
	r.PathV = []byte(path)
	r.VarsV = vars
	if id != nil {
		require.NoError(h.t, emit.Attach(r, emit.Proof{Identity: *id, Route: h.emitRoute}))
	}
	w := httptest.NewRecorder()
	h.plugin.RequestFilter(conf, w, r)
	return w, r
}

func ptr(id identity.Identity) *identity.Identity { return &id }

func refusal(status int, reason string) string {
	return `{"error":"` + http.StatusText(status) + `","reason":"` + reason + `"}`
}

func TestRuleOnCurrentMemberships(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h","require":{"org":"acme"}}`)
	alice := login("u-alice", "acme")

	w, r := h.do(conf, alice, nil)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Equal(t, "acme", r.Header().Get("X-User-Orgs"))

	// Removed from acme in Keycloak: the login still says acme, the door closes.
	h.dir.addUser("u-alice", true, globex)
	require.NoError(t, invalidateUsers(t.Context(), h.plugin.deps, []string{"u-alice"}, InvalidatedByWebhook))
	w, _ = h.do(conf, alice, nil)
	assert.Equal(t, http.StatusForbidden, w.Code)
	assert.JSONEq(t, refusal(http.StatusForbidden, access.ReasonRuleNotMet), w.Body.String(),
		"the body names no rule and no membership")
}

// The login's claim never grants: a user the token says is in acme but
// Keycloak does not is refused, and one Keycloak has in acme passes although
// the token does not say so.
func TestRuleIgnoresLoginClaims(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-bob", true, globex)
	h.dir.addUser("u-carol", true, acme)
	conf := h.route(`{"require":{"org":"acme"}}`)
	w, _ := h.do(conf, login("u-bob", "acme"), nil)
	assert.Equal(t, http.StatusForbidden, w.Code)
	w, _ = h.do(conf, login("u-carol"), nil)
	assert.Equal(t, http.StatusOK, w.Code)
}

// A rendering stored for the same login by a route without the rule is
// never replayed past the rule.
func TestRuleDecidedBeforeReplay(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	open := h.route(`{}`)
	closed := h.route(`{"require":{"org":"globex"}}`)
	alice := login("u-alice", "acme")
	// Rendered from Keycloak, then from the cache: the second rendering is
	// what a request served from the cache would replay.
	for range 2 {
		w, _ := h.do(open, alice, nil)
		require.Equal(t, http.StatusOK, w.Code)
	}
	signed := h.emitter.Signed()
	w, _ := h.do(open, alice, nil)
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, signed, h.emitter.Signed(), "the open route replays the login's rendering")
	w, _ = h.do(closed, alice, nil)
	assert.Equal(t, http.StatusForbidden, w.Code, "nothing replayed past the rule")
}

func TestRuleWithoutCurrentData(t *testing.T) {
	h := newHarness(t)
	h.dir.setFail(errKeycloakDown)
	alice := login("u-alice", "acme")
	// Nothing cached: the token's claim is what would be left, and no rule
	// is decided on it.
	w, _ := h.do(h.route(`{"on_keycloak_error":"stale","require":{"org":"acme"}}`), alice, nil)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.JSONEq(t, refusal(http.StatusServiceUnavailable, ReasonKeycloakError), w.Body.String())
}

func TestRuleOnStaleData(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	member := h.route(`{"fresh_ttl":"1s","stale_ttl":"1s","require":{"org":"acme"}}`)
	other := h.route(`{"fresh_ttl":"1s","stale_ttl":"1s","require":{"org":"globex"}}`)
	alice := login("u-alice")
	w, _ := h.do(member, alice, nil)
	require.Equal(t, http.StatusOK, w.Code)
	h.dir.setFail(errKeycloakDown)
	time.Sleep(1100 * time.Millisecond)
	deadline := time.Now().Add(3 * time.Second)
	for {
		w, r := h.do(member, alice, nil)
		require.Equal(t, http.StatusOK, w.Code, "decided on the stale value the upstream gets")
		if r.Header().Get(identity.HeaderOrgsSource) == SourceStale {
			break
		}
		require.True(t, time.Now().Before(deadline), "never marked stale")
		time.Sleep(50 * time.Millisecond)
	}
	w, _ = h.do(other, alice, nil)
	assert.Equal(t, http.StatusForbidden, w.Code)
}

func TestRuleRefusesAnonymous(t *testing.T) {
	h := newHarness(t)
	w, _ := h.doAnonymous(h.route(`{"require":{"org":"acme"}}`), nil)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.JSONEq(t, refusal(http.StatusUnauthorized, ReasonIdentityRequired), w.Body.String())
	w, _ = h.doAnonymous(h.route(`{"tenant":{"header":"X-Tenant"}}`), map[string]string{"X-Tenant": "acme"})
	assert.Equal(t, http.StatusUnauthorized, w.Code)
}

func TestRuleOnRolesAndGroups(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	alice := login("u-alice")
	w, _ := h.do(h.route(`{"claims":["organization","roles"],"require":{"realm_role":"course-admin"}}`), alice, nil)
	assert.Equal(t, http.StatusOK, w.Code)
	w, _ = h.do(h.route(`{"claims":["organization","roles"],"require":{"realm_role":"admin"}}`), alice, nil)
	assert.Equal(t, http.StatusForbidden, w.Code)
	w, _ = h.do(h.route(`{"claims":["organization","groups"],"require":{"all":[{"group":"/staff"},{"org":"acme"}]}}`), alice, nil)
	assert.Equal(t, http.StatusOK, w.Code)
}

// Organization groups and client roles are decided on orgsync's current
// data too, once the route's claims fetch them.
func TestRuleOnOrganizationGroupsAndClientRoles(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	alice := login("u-alice")
	clientRole := func(client, role string) string {
		return `{"claims":["organization","client_roles"],"require":{"client_role":{"client":"` + client + `","role":"` + role + `"}}}`
	}
	w, _ := h.do(h.route(clientRole("account", "view-profile")), alice, nil)
	assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
	w, _ = h.do(h.route(clientRole("account", "manage-account")), alice, nil)
	assert.Equal(t, http.StatusForbidden, w.Code)
	w, _ = h.do(h.route(clientRole("billing", "view-profile")), alice, nil)
	assert.Equal(t, http.StatusForbidden, w.Code, "a role of another client")

	orgGroup := func(org string) string {
		return `{"claims":["organization","organization_groups"],"shape":"list","fresh_ttl":"1s","require":{"org_group":{"org":"` + org + `","group":"/ops"}}}`
	}
	w, _ = h.do(h.route(orgGroup("acme")), alice, nil)
	assert.Equal(t, http.StatusForbidden, w.Code, "not in the group yet")
	h.dir.mu.Lock()
	h.dir.memberGroups = []string{"/ops"}
	h.dir.mu.Unlock()
	require.NoError(t, invalidateUsers(t.Context(), h.plugin.deps, []string{"u-alice"}, InvalidatedByWebhook))
	w, _ = h.do(h.route(orgGroup("acme")), alice, nil)
	assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
	w, _ = h.do(h.route(orgGroup("globex")), alice, nil)
	assert.Equal(t, http.StatusForbidden, w.Code, "the group of an organization the user is not in")
}

func TestTenantFromPathOnServe(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{"tenant":{"path":"/orgs/{org}"}}`)
	alice := login("u-alice")
	cases := []struct {
		uri, raw string
		status   int
		reason   string
	}{
		{"/orgs/acme/invoices", "/orgs/acme/invoices?x=1", http.StatusOK, ""},
		{"/orgs/globex/invoices", "/orgs/globex/invoices", http.StatusForbidden, access.ReasonTenantNotMember},
		{"/orgs/ACME/invoices", "/orgs/ACME/invoices", http.StatusForbidden, access.ReasonTenantNotMember},
		// A member of acme asking, through nginx's normalization, for what
		// the upstream reads as globex's.
		{"/orgs/acme/invoices", "/orgs/globex/../acme/invoices", http.StatusBadRequest, access.ReasonTenantAmbiguous},
		{"/orgs/acme/globex", "/orgs/acme%2Fglobex", http.StatusBadRequest, access.ReasonTenantAmbiguous},
		{"/orgs/acme/orgs/globex", "/orgs/acme/orgs/globex", http.StatusBadRequest, access.ReasonTenantAmbiguous},
		{"/other", "/other", http.StatusBadRequest, access.ReasonTenantMissing},
	}
	missing := testutil.ToFloat64(metricAccessRefusals.WithLabelValues("tenant-route", access.ReasonTenantMissing))
	for _, tc := range cases {
		t.Run(tc.raw, func(t *testing.T) {
			w, r := h.doAt(conf, ptr(alice), tc.uri, map[string]string{"real_request_uri": tc.raw, "route_id": "tenant-route"}, nil)
			assert.Equal(t, tc.status, w.Code)
			if tc.reason != "" {
				assert.JSONEq(t, refusal(tc.status, tc.reason), w.Body.String())
			} else {
				assert.Equal(t, 1, r.VarCalls, "an allowed request asks APISIX for the raw path only")
			}
		})
	}
	assert.InDelta(t, missing+1, testutil.ToFloat64(metricAccessRefusals.WithLabelValues("tenant-route", access.ReasonTenantMissing)), 0)
}

func TestTenantHeaderGivenTwiceIsRefused(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{"tenant":{"header":"X-Tenant"}}`)
	alice := login("u-alice")
	w, _ := h.doAt(conf, ptr(alice), "/", nil, map[string]string{"X-Tenant": "acme"})
	assert.Equal(t, http.StatusOK, w.Code)
	// The gateway set X-Tenant; a client's X_Tenant rides along (nginx
	// passes underscores) for an upstream that reads that spelling.
	w, _ = h.doAt(conf, ptr(alice), "/", nil, map[string]string{"X-Tenant": "acme", "X_Tenant": "globex"})
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.JSONEq(t, refusal(http.StatusBadRequest, access.ReasonTenantAmbiguous), w.Body.String())
}

func TestTenantFromHostOnServe(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{"tenant":{"host":"{org}.apps.example.org"},"require":{"any":[{"org":"acme"},{"org":"globex"}]}}`)
	alice := login("u-alice")
	for host, status := range map[string]int{
		"acme.apps.example.org:9080":  http.StatusOK,
		"globex.apps.example.org":     http.StatusForbidden,
		"acme.apps.example.org.":      http.StatusBadRequest,
		"Acme.apps.example.org":       http.StatusBadRequest,
		"\u0430cme.apps.example.org":  http.StatusBadRequest,
		"acme.apps.example.org.evil":  http.StatusBadRequest,
		"acme.apps.example.org:80:80": http.StatusBadRequest,
	} {
		w, _ := h.doAt(conf, ptr(alice), "/", nil, map[string]string{"Host": host})
		assert.Equal(t, status, w.Code, host)
	}
}

func TestRefusalsCountedByRoute(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{"require":{"org":"globex"}}`)
	before := testutil.ToFloat64(metricAccessRefusals.WithLabelValues("r-42", access.ReasonRuleNotMet))
	w, _ := h.doAt(conf, ptr(login("u-alice")), "/", map[string]string{"route_id": "r-42"}, nil)
	require.Equal(t, http.StatusForbidden, w.Code)
	assert.InDelta(t, before+1, testutil.ToFloat64(metricAccessRefusals.WithLabelValues("r-42", access.ReasonRuleNotMet)), 0)
	// A route id that is no route id is not a label.
	invalid := testutil.ToFloat64(metricAccessRefusals.WithLabelValues("invalid", access.ReasonRuleNotMet))
	w, _ = h.doAt(conf, ptr(login("u-alice")), "/", map[string]string{"route_id": "a b\n"}, nil)
	require.Equal(t, http.StatusForbidden, w.Code)
	assert.InDelta(t, invalid+1, testutil.ToFloat64(metricAccessRefusals.WithLabelValues("invalid", access.ReasonRuleNotMet)), 0)
}

func TestRuleConfig(t *testing.T) {
	p := New(Deps{})
	bad := map[string]string{
		`{"require":{"any":[{"orgg":"acme"}]}}`:                       `unknown key "require.any.0.orgg"`,
		`{"require":{"client_role":{"client":"c","role":"r","x":1}}}`: `unknown key "require.client_role.x"`,
		`{"require":{"realm_role":"admin"}}`:                          `add "roles" to "claims"`,
		`{"require":{"group":"/staff"}}`:                              `add "groups" to "claims"`,
		`{"require":{"org_group":{"org":"acme","group":"/ops"}}}`:     "organization groups",
		`{"require":{"client_role":{"client":"c","role":"r"}}}`:       "client roles",
		`{"require":{}}`: "empty rule",
		`{"require":{"org":"acme","group":"/x"},"claims":["organization","groups"]}`: "one rule per object",
		`{"tenant":{"path":"/orgs/{org}","host":"{org}.example.org"}}`:               "exactly one",
		`{"tenant":{"path":"/orgs/{org}","bye":"x"}}`:                                `unknown key "tenant.bye"`,
		`{"invalidate":true,"secret_env":"X_SECRET","require":{"org":"a"}}`:          "takes only",
	}
	for in, want := range bad {
		t.Run(in, func(t *testing.T) {
			v, err := p.ParseConf([]byte(in))
			require.NoError(t, err, "never an error: the runner would skip the plugin")
			require.Error(t, v.(*Conf).Err())
			assert.Contains(t, v.(*Conf).Err().Error(), want)
		})
	}
}

// A rule that does not parse closes the route: the runner would skip a
// plugin whose ParseConf failed and let the request through.
func TestBadRuleFailsClosed(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	v, err := h.plugin.ParseConf([]byte(`{"require":{"orgs":["acme"]}}`))
	require.NoError(t, err)
	w, _ := h.do(v, login("u-alice", "acme"), nil)
	assert.Equal(t, http.StatusInternalServerError, w.Code)
}

// The log says what the body must not: the rule and the user, at debug.
func TestRefusalLoggedAtDebug(t *testing.T) {
	logs := logtest.Capture(t, slog.LevelDebug)
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	w, _ := h.doAt(h.route(`{"require":{"any":[{"org":"globex"},{"org":"initech"}]}}`), ptr(login("u-alice")), "/",
		map[string]string{"route_id": "r-7"}, nil)
	require.Equal(t, http.StatusForbidden, w.Code)
	assert.NotContains(t, w.Body.String(), "globex")
	line := logs.String()
	assert.Contains(t, line, "access refused")
	assert.Contains(t, line, "u-alice")
	assert.Contains(t, line, "r-7")
	assert.Contains(t, line, `{\"any\":[{\"org\":\"globex\"},{\"org\":\"initech\"}]}`)
}

// The hit path with a rule against the same route without it (the cache
// warm, the rendering replayed): the rule's own cost.
func BenchmarkServeWithRule(b *testing.B) {
	for _, tc := range []struct{ name, conf string }{
		{"none", `{"fresh_ttl":"1h","stale_ttl":"1h"}`},
		{"org", `{"fresh_ttl":"1h","stale_ttl":"1h","require":{"org":"acme"}}`},
		{"nested", `{"fresh_ttl":"1h","stale_ttl":"1h","claims":["organization","roles"],"require":{"all":[{"any":[{"org":"initech"},{"org":"acme"}]},{"realm_role":"course-admin"}]}}`},
		{"header tenant", `{"fresh_ttl":"1h","stale_ttl":"1h","tenant":{"header":"X-Tenant"}}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			store, err := cache.New(b.Context(), &cache.Options{})
			require.NoError(b, err)
			b.Cleanup(func() { _ = store.Close() })
			dir := newFakeDirectory(testRealm)
			dir.addUser("u-alice", true, acme, globex)
			em := emit.New(emit.Options{Keys: testKeys})
			route := em.Route([]emit.ClaimHeader{{Header: identity.HeaderUserOrgs, Claim: identity.ClaimOrganization}},
				&emit.Assertion{Header: identity.HeaderAssertion, Audience: "app", Issuer: "gw", TTL: time.Minute})
			p := New(Deps{Cache: store, Keycloak: dir, Emitter: em})
			conf, err := p.ParseConf([]byte(tc.conf))
			require.NoError(b, err)
			require.NoError(b, conf.(*Conf).Err())
			alice := login("u-alice")
			do := func() int {
				r := runnertest.NewRequest(1, 1, map[string]string{"X-Tenant": "acme"})
				require.NoError(b, emit.Attach(r, emit.Proof{Identity: alice, Route: route}))
				w := httptest.NewRecorder()
				p.RequestFilter(conf, w, r)
				return w.Code
			}
			for range 3 {
				do()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if code := do(); code != http.StatusOK {
					b.Fatal(code)
				}
			}
		})
	}
}
