//go:build integration

package integration

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// doAt sends one request as APISIX would for a client that asked for raw
// (the request-target): the runner gets uri ($uri, nginx's normalized path)
// and can ask for real_request_uri.
func (r *runner) doAt(t *testing.T, route *apisix.Route, headers map[string]string, uri, raw string) *apisix.Result {
	t.Helper()
	h := http.Header{}
	for k, v := range headers {
		h[k] = []string{v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.gw.Do(ctx, route, &apisix.Request{Method: http.MethodGet, Path: uri, Header: h, SrcIP: "192.0.2.10",
		Vars: map[string]string{"real_request_uri": raw}})
	require.NoError(t, err)
	return res
}

// A route only acme's current members pass: a member passes, a non-member
// gets 403 with the reason only, and an admin's removal from acme closes the
// door for the member's same session, without a new login.
func TestAccessRuleOnLiveMembership(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	member := kctest.CreateUser(t, "rule-member")
	kctest.AddMember(t, "acme", member.ID)
	outsider := kctest.CreateUser(t, "rule-outsider")
	kctest.AddMember(t, "globex", outsider.ID)
	memberSess := kctest.Login(t, member.Username, member.Password)
	outsiderSess := kctest.Login(t, outsider.Username, outsider.Password)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"5m","stale_ttl":"10m","require":{"org":"acme"}}`))

	res := r.do(t, route, headersOf(memberSess))
	require.Equal(t, http.StatusOK, res.Status, "body %s", res.Body)
	assert.True(t, res.Upstream)

	res = r.do(t, route, headersOf(outsiderSess))
	assert.Equal(t, http.StatusForbidden, res.Status)
	assert.False(t, res.Upstream)
	assert.JSONEq(t, `{"error":"Forbidden","reason":"access_rule_not_met"}`, string(res.Body))

	removed := time.Now()
	kctest.RemoveMember(t, "acme", member.ID)
	eventually(t, 3*time.Second, "403 after the removal (events interval 1s)", func() bool {
		return r.do(t, route, headersOf(memberSess)).Status == http.StatusForbidden
	})
	t.Logf("first 403 %d ms after the admin removed the member", time.Since(removed).Milliseconds())

	kctest.AddMember(t, "acme", member.ID)
	eventually(t, 3*time.Second, "200 after the member is added back", func() bool {
		return r.do(t, route, headersOf(memberSess)).Status == http.StatusOK
	})
}

// The tenant comes from the path: a member of acme reaches /orgs/acme/...,
// not /orgs/globex/..., and not globex's through a path nginx normalizes
// into acme's.
func TestAccessTenantFromPath(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "tenant")
	kctest.AddMember(t, "acme", user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{"tenant":{"path":"/orgs/{org}"}}`))

	res := r.doAt(t, route, headersOf(sess), "/orgs/acme/invoices", "/orgs/acme/invoices?page=1")
	require.Equal(t, http.StatusOK, res.Status, "body %s", res.Body)
	assert.Equal(t, 1, res.ExtraInfoCalls, "one round trip for the raw request-target")

	res = r.doAt(t, route, headersOf(sess), "/orgs/globex/invoices", "/orgs/globex/invoices")
	assert.Equal(t, http.StatusForbidden, res.Status)
	assert.JSONEq(t, `{"error":"Forbidden","reason":"tenant_not_member"}`, string(res.Body))

	// The upstream gets the raw target: /orgs/globex/../acme reads as globex there.
	res = r.doAt(t, route, headersOf(sess), "/orgs/acme/invoices", "/orgs/globex/../acme/invoices")
	assert.Equal(t, http.StatusBadRequest, res.Status)
	assert.JSONEq(t, `{"error":"Bad Request","reason":"tenant_ambiguous"}`, string(res.Body))
	assert.False(t, res.Upstream)

	// The tenant from the Host header as the client sent it (APISIX passes it as `host`).
	hostRoute := newRoute(userinfoConf(t, ""), orgsyncConf(`{"tenant":{"host":"{org}.apps.example.org"}}`))
	withHost := func(host string) map[string]string {
		h := headersOf(sess)
		h["Host"] = host
		return h
	}
	assert.Equal(t, http.StatusOK, r.doAt(t, hostRoute, withHost("acme.apps.example.org:9080"), "/", "/").Status)
	assert.Equal(t, http.StatusForbidden, r.doAt(t, hostRoute, withHost("globex.apps.example.org"), "/", "/").Status)
	assert.Equal(t, http.StatusBadRequest, r.doAt(t, hostRoute, withHost("acme.apps.example.org."), "/", "/").Status)

	kctest.RemoveMember(t, "acme", user.ID)
	eventually(t, 3*time.Second, "403 on the tenant after the removal", func() bool {
		return r.doAt(t, route, headersOf(sess), "/orgs/acme/invoices", "/orgs/acme/invoices").Status == http.StatusForbidden
	})
}
