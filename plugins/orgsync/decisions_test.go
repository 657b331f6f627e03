package orgsync

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
)

// The settings that change what orgsync decides or writes, one value each
// per variant: every route config below is one combination.
var decisionSettings = [][]string{
	{`"check_account":true`, `"check_account":false`},
	{`"on_keycloak_error":"stale"`, `"on_keycloak_error":"deny"`},
	{`"shape":"auto"`, `"shape":"list"`, `"shape":"map_attributes"`},
	{`"claims":["organization"]`, `"claims":["organization","groups","roles"]`},
}

func decisionConfigs() []string {
	confs := []string{""}
	for _, values := range decisionSettings {
		var next []string
		for _, prefix := range confs {
			for _, v := range values {
				if prefix != "" {
					next = append(next, prefix+","+v)
				} else {
					next = append(next, v)
				}
			}
		}
		confs = next
	}
	for i := range confs {
		confs[i] = `{"fresh_ttl":"1h","stale_ttl":"1h",` + confs[i] + `}`
	}
	return confs
}

// decisionScenarios put Keycloak in the state a user can be in.
var decisionScenarios = map[string]func(d *fakeDirectory){
	"active":        func(d *fakeDirectory) { d.addUser("u-x", true, acme, globex) },
	"disabled":      func(d *fakeDirectory) { d.addUser("u-x", false, acme) },
	"deleted":       func(*fakeDirectory) {},
	"keycloak down": func(d *fakeDirectory) { d.addUser("u-x", true, acme); d.setFail(errKeycloakDown) },
}

// answer is what a request got, with where the value came from folded
// (the first request on a warm cache reads "cache" where a cold one reads
// "keycloak": the same data).
func answerOf(w interface{ Result() *http.Response }, body string, h http.Header) string {
	source := h.Get(identity.HeaderOrgsSource)
	if source == SourceCache {
		source = SourceKeycloak
	}
	return fmt.Sprintf("%d %s userinfo=%s orgs=%s source=%s", w.Result().StatusCode, strings.TrimSpace(body),
		h.Get(identity.HeaderUserinfo), h.Get(identity.HeaderUserOrgs), source)
}

// One login on two routes with different orgsync settings: whatever the
// first route stored (a cached value, a rendering), the second answers
// exactly as it does on its own. A reused rendering is a shortcut, never a
// decision (issue 15, item 1: a deleted account passed a check_account
// route after one request on a route without it).
func TestRouteSettingsNeverLeakThroughReuse(t *testing.T) {
	confs := decisionConfigs()
	require.Len(t, confs, 24)
	for scenario, setup := range decisionScenarios {
		alone := map[string][]string{}
		answers := func(h *harness, conf any, id identity.Identity, n int) []string {
			var out []string
			for range n {
				w, r := h.do(conf, id, nil)
				out = append(out, answerOf(w, w.Body.String(), r.Header().View()))
			}
			return out
		}
		for _, b := range confs {
			h := newHarness(t)
			setup(h.dir)
			alone[b] = answers(h, h.route(b), login("u-x", "acme"), 2)
		}
		for _, a := range confs {
			for _, b := range confs {
				if a == b {
					continue
				}
				h := newHarness(t)
				setup(h.dir)
				id := login("u-x", "acme")
				answers(h, h.route(a), id, 1)
				got := answers(h, h.route(b), id, 2)
				if !assert.Equal(t, alone[b], got, "%s: route %s after route %s", scenario, b, a) {
					return
				}
			}
		}
	}
}

// The case of the report, spelled out: a deleted user's request on a route
// without the account check must not let the next ones on a route with it
// through.
func TestDeletedAccountStaysRefusedAfterALaxRoute(t *testing.T) {
	h := newHarness(t)
	lax := h.route(`{"check_account":false}`)
	strict := h.route(`{}`)
	gone := login("u-gone", "acme")
	w, _ := h.do(lax, gone, nil)
	require.Equal(t, http.StatusOK, w.Code)
	for range 3 {
		w, r := h.do(strict, gone, nil)
		assert.Equal(t, http.StatusUnauthorized, w.Code)
		assert.Contains(t, w.Body.String(), ReasonAccountUnknown)
		assert.Empty(t, r.Header().Get(identity.HeaderUserinfo))
	}
}

// On a route with orgsync and no userinfo, the openid-connect headers that
// nothing there verifies (APISIX 3.18's X-Raw-ID-Token among them) never
// reach the upstream, in any spelling.
func TestWithoutUserinfoUnverifiableOIDCHeadersAreRemoved(t *testing.T) {
	h := newHarness(t)
	conf := h.route(`{}`)
	for _, name := range []string{"X-ID-Token", "X-Raw-ID-Token", "X-Refresh-Token"} {
		for _, spelling := range []string{name, strings.ToLower(name), strings.ReplaceAll(name, "-", "_")} {
			w, r := h.doAnonymous(conf, map[string]string{spelling: "eyJhbGciOiJSUzI1NiJ9.e30.forged"})
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
			for k := range r.Header().View() {
				assert.NotEqual(t, identity.NormalizeName(name), identity.NormalizeName(k), "%s reached the upstream as %s", spelling, k)
			}
		}
	}
}
