package userinfo

import (
	"maps"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// The trusted outputs are a function of the verified token only: an
// X-Userinfo that names fewer claims than the token carries (or more, or
// other values) changes nothing the upstream trusts. Before, a client that
// sent X-Userinfo {"sub": <its own sub>} with its valid token had every other
// claim (organization, groups, roles, email) left out of the assertion.
func TestUserinfoCannotHideTokenClaims(t *testing.T) {
	is := tokentest.NewIssuer(t)
	tok := is.Claims("u-carol")
	profile := map[string]any{
		"sub": "u-carol", "email": "carol@example.org", "email_verified": true, "name": "Carol C",
		"preferred_username": "carol", "groups": []string{"/suspended"},
		"realm_access": map[string]any{"roles": []string{"restricted"}},
		"organization": map[string]any{"acme": map[string]any{"id": "org-1"}},
	}
	maps.Copy(tok, profile)
	token := is.Sign(tok)
	withExtra := maps.Clone(profile)
	withExtra["email"] = "ceo@example.org"
	withExtra["nickname"] = "c"
	withExtra["groups"] = []string{}
	variants := map[string]map[string]any{
		"complete": profile,
		"minimal":  {"sub": "u-carol"},
		"extra":    withExtra,
	}
	rt := newRoute(t, confFor(is, `,"claim_headers":{"X-User-Email":"email","X-User-Orgs":"organization","X-Groups":"groups"}`))
	var want map[string]any
	var wantHeaders map[string]string
	for _, name := range []string{"complete", "minimal", "extra"} {
		w, r := rt.do(map[string]string{"x-userinfo": userinfoHeader(variants[name]), "x-access-token": token})
		require.Equal(t, 200, w.Code, "%s: %s", name, w.Body.String())
		claims := verifyAssertion(t, r.Header().Get("X-Identity-Assertion"))
		for _, timing := range []string{"iat", "exp", "jti"} {
			delete(claims, timing)
		}
		headers := map[string]string{}
		for _, h := range []string{"X-Userinfo", "X-User-Email", "X-User-Orgs", "X-Groups"} {
			headers[h] = r.Header().Get(h)
		}
		if want == nil {
			want, wantHeaders = claims, headers
			assert.Equal(t, "carol@example.org", claims["email"])
			assert.Equal(t, []any{"/suspended"}, claims["groups"])
			assert.Equal(t, []any{"restricted"}, claims["roles"])
			assert.Contains(t, claims["organization"], "acme")
			continue
		}
		assert.Equal(t, want, claims, "assertion with the %s X-Userinfo", name)
		assert.Equal(t, wantHeaders, headers, "trusted headers with the %s X-Userinfo", name)
	}
}

// X-Refresh-Token (set_refresh_token_header) cannot be verified outside
// Keycloak: it never reaches the upstream, in any spelling, whether the
// request is verified or anonymous.
func TestRefreshTokenNeverPasses(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	for _, spelling := range []string{"X-Refresh-Token", "x-refresh-token", "x_refresh_token", "X_REFRESH_TOKEN"} {
		for name, h := range map[string]map[string]string{
			"verified":  loggedIn(is, "u-dave", map[string]any{"sub": "u-dave"}),
			"anonymous": {"accept": "text/html"},
		} {
			h = maps.Clone(h)
			h[spelling] = "eyJhbGciOiJIUzUxMiJ9.e30.forged"
			w, r := rt.do(h)
			require.Equal(t, 200, w.Code, "%s %s: %s", name, spelling, w.Body.String())
			for k := range r.Header().View() {
				assert.NotEqual(t, "x-refresh-token", identity.NormalizeName(k), "%s: %s reached the upstream as %s", name, spelling, k)
			}
		}
	}
}
