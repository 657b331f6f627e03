//go:build integration

package integration

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// TestRealKeycloakStopped stops the real Keycloak process, not a proxy: cached
// users keep working marked stale, deny routes answer 503, and once Keycloak
// is back on the same address the lists are fresh again. It runs last (file
// order): Keycloak comes back from the database snapshot taken after the
// realm import, without the users earlier tests created.
func TestRealKeycloakStopped(t *testing.T) {
	s := kctest.Env(t)
	u, err := url.Parse(s.URL)
	require.NoError(t, err)
	e := baseEnv(t, s.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	r := startRunner(t, e)
	sess := kctest.Login(t, "alice", "alice-password") // a user of the realm file, never changed by tests
	stale := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"1s","stale_ttl":"2s","timeout":"1s"}`))
	deny := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"1s","stale_ttl":"2s","timeout":"1s","on_keycloak_error":"deny"}`))

	res := r.do(t, stale, headersOf(sess))
	require.Equal(t, 200, res.Status, "body %s", res.Body)
	require.Equal(t, "keycloak", res.UpstreamHeader.Get("X-User-Orgs-Source"))
	require.Equal(t, "acme", res.UpstreamHeader.Get("X-User-Orgs"))

	script := filepath.Join(repoRoot(), "scripts", "keycloak.sh")
	run := func(args ...string) {
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "KC_HTTP_PORT="+u.Port())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	run("stop")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			run("start")
		}
	})

	time.Sleep(2500 * time.Millisecond) // past stale_ttl
	res = r.do(t, stale, headersOf(sess))
	require.Equal(t, 200, res.Status, "a cached user keeps working: %s", res.Body)
	assert.Equal(t, "stale", res.UpstreamHeader.Get("X-User-Orgs-Source"))
	assert.Equal(t, "acme", res.UpstreamHeader.Get("X-User-Orgs"))
	res = r.do(t, deny, headersOf(sess))
	assert.Equal(t, 503, res.Status)
	assert.Equal(t, "keycloak_unavailable", reasonOf(t, res))

	run("start")
	restarted = true
	eventually(t, 30*time.Second, "fresh from Keycloak again", func() bool {
		res := r.do(t, stale, headersOf(sess))
		return res.Status == 200 && res.UpstreamHeader.Get("X-User-Orgs-Source") == "keycloak"
	})
}
