package userinfo

import (
	"fmt"
	"net/http"
	"testing"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	runnertest "github.com/apache/apisix-go-plugin-runner/pkg/httptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// TestAttacksThroughTheRunnerLibrary runs the header attacks on the runner
// library's own Request, where userinfo reads the frame through header
// views (the other tests use a map-based fake): what APISIX is told to
// remove or refuse is what the map-based path decides.
func TestAttacksThroughTheRunnerLibrary(t *testing.T) {
	is := tokentest.NewIssuer(t)
	em := emit.New(emit.Options{Keys: testKeys})
	p := New(Deps{Emitter: em})
	v, err := p.ParseConf([]byte(confFor(is, "")))
	require.NoError(t, err)
	filter := func(w http.ResponseWriter, r pkgHTTP.Request) { p.RequestFilter(v, w, r) }
	serve := func(headers ...[2]string) runnertest.Answer {
		return runnertest.ParseAnswer(runnertest.ServeFrame(nil, runnertest.NewRequestFrame(1, 1, "/", headers), filter))
	}
	alice := map[string]any{"sub": "u-alice", "email": "alice@example.org"}
	claims := is.Claims("u-alice")
	claims["email"] = "alice@example.org"
	ui := [2]string{"x-userinfo", userinfoHeader(alice)}
	tok := [2]string{"x-access-token", is.Sign(claims)}
	forged := userinfoHeader(map[string]any{"sub": "u-admin"})
	changes := func(a runnertest.Answer) map[string]runnertest.HeaderChange {
		out := map[string]runnertest.HeaderChange{}
		for _, h := range a.Headers {
			out[h.Name] = h
		}
		return out
	}

	t.Run("underscore spellings beside a login are removed", func(t *testing.T) {
		a := serve(ui, tok, [2]string{"x_raw_id_token", "forged"}, [2]string{"X_Refresh_Token", "forged"})
		require.False(t, a.Stop, "status %d", a.Status)
		c := changes(a)
		assert.Equal(t, runnertest.HeaderChange{Name: "X_raw_id_token", Delete: true}, c["X_raw_id_token"])
		assert.Equal(t, runnertest.HeaderChange{Name: "X_refresh_token", Delete: true}, c["X_refresh_token"])
		assert.Equal(t, "u-alice", c["X-User-Id"].Value)
	})
	t.Run("forged emitted headers are replaced or removed", func(t *testing.T) {
		a := serve(ui, tok, [2]string{"x-user-id", "u-admin"}, [2]string{"X_User_Email", "root@example.org"},
			[2]string{"x-identity-assertion", "eyJhbGciOiJub25lIn0.e30."})
		require.False(t, a.Stop)
		c := changes(a)
		assert.Equal(t, "u-alice", c["X-User-Id"].Value)
		assert.True(t, c["X_user_email"].Delete)
		assert.NotEqual(t, "eyJhbGciOiJub25lIn0.e30.", c["X-Identity-Assertion"].Value)
		verifyAssertion(t, c["X-Identity-Assertion"].Value)
	})
	t.Run("refresh token and unverified ID token are removed", func(t *testing.T) {
		a := serve(ui, tok, [2]string{"x-refresh-token", "r"}, [2]string{"x-id-token", "e30="})
		require.False(t, a.Stop)
		c := changes(a)
		assert.True(t, c["X-Refresh-Token"].Delete)
		assert.True(t, c["X-Id-Token"].Delete)
	})
	for name, extra := range map[string][][2]string{
		"x-user-orgs twice":                    {{"x-user-orgs", "acme"}, {"x-user-orgs", "globex"}},
		"X-User-Orgs in two cases":             {{"X-USER-ORGS", "acme"}, {"x-user-orgs", "globex"}},
		"x-user-orgs and x_user_orgs":          {{"x-user-orgs", "acme"}, {"x_user_orgs", "globex"}},
		"x-userinfo again in another case":     {{"X-Userinfo", forged}},
		"x_userinfo beside x-userinfo":         {{"x_userinfo", forged}},
		"x_access_token beside x-access-token": {{"x_access_token", "second"}},
	} {
		t.Run(name+" is refused", func(t *testing.T) {
			a := serve(append([][2]string{ui, tok}, extra...)...)
			assert.True(t, a.Stop)
			assert.Equal(t, http.StatusBadRequest, a.Status)
		})
	}
	t.Run("a hundred headers are refused", func(t *testing.T) {
		headers := [][2]string{ui, tok}
		for i := 0; len(headers) < apisixHeaderLimit; i++ {
			headers = append(headers, [2]string{fmt.Sprintf("x-filler-%d", i), "x"})
		}
		a := serve(headers...)
		assert.True(t, a.Stop)
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, a.Status)
	})
	t.Run("anonymous: every openid-connect header in any spelling is removed", func(t *testing.T) {
		a := serve([2]string{"X_Userinfo", forged}, [2]string{"x-id-token", "e30="}, [2]string{"x_raw_id_token", "x"})
		require.False(t, a.Stop)
		c := changes(a)
		assert.True(t, c["X_userinfo"].Delete)
		assert.True(t, c["X-Id-Token"].Delete)
		assert.True(t, c["X_raw_id_token"].Delete)
		assert.NotContains(t, c, "X-User-Id")
	})
}
