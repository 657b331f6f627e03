package orgsync

import (
	"net/http"
	"testing"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	runnertest "github.com/apache/apisix-go-plugin-runner/pkg/httptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWithoutUserinfoThroughTheRunnerLibrary: orgsync's path without
// userinfo on the runner library's own Request, where it reads the frame
// through header views (the other tests use a map-based fake).
func TestWithoutUserinfoThroughTheRunnerLibrary(t *testing.T) {
	h := newHarness(t)
	conf := h.route(`{}`)
	filter := func(w http.ResponseWriter, r pkgHTTP.Request) { h.plugin.RequestFilter(conf, w, r) }
	serve := func(headers ...[2]string) runnertest.Answer {
		return runnertest.ParseAnswer(runnertest.ServeFrame(nil, runnertest.NewRequestFrame(1, 1, "/", headers), filter))
	}

	a := serve([2]string{"x-user-id", "u-admin"}, [2]string{"x_user_orgs", "globex"}, [2]string{"X-User-Orgs-Source", "keycloak"},
		[2]string{"x-identity-assertion", "eyJhbGciOiJub25lIn0.e30."}, [2]string{"x-id-token", "e30="},
		[2]string{"x_refresh_token", "r"}, [2]string{"accept", "text/html"})
	require.False(t, a.Stop, "status %d", a.Status)
	deleted := map[string]bool{}
	for _, c := range a.Headers {
		assert.True(t, c.Delete, "%s is set", c.Name)
		deleted[c.Name] = true
	}
	assert.Equal(t, map[string]bool{"X-User-Id": true, "X_user_orgs": true, "X-User-Orgs-Source": true,
		"X-Identity-Assertion": true, "X-Id-Token": true, "X_refresh_token": true}, deleted)

	a = serve([2]string{"X-User-Orgs", "acme"}, [2]string{"x_user_orgs", "globex"})
	assert.True(t, a.Stop)
	assert.Equal(t, http.StatusBadRequest, a.Status)

	for _, name := range []string{"x-userinfo", "X-Access-Token"} {
		a = serve([2]string{name, "e30="})
		assert.True(t, a.Stop, name)
		assert.Equal(t, http.StatusInternalServerError, a.Status, name)
	}
	assert.EqualValues(t, 0, h.dir.calls.Load())
}
