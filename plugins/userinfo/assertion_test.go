package userinfo

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// identityClaims is an assertion's payload without what describes one signed
// assertion rather than the user (iat, exp, jti).
func identityClaims(t *testing.T, jws string) map[string]any {
	t.Helper()
	claims := verifyAssertion(t, jws)
	for _, name := range []string{"iat", "exp", "jti"} {
		delete(claims, name)
	}
	return claims
}

// Two realms may each have a user of the same id. Two routes trusting one
// realm each and signing for one audience must still give assertions an app
// can tell apart: each names the realm its token came from.
func TestAssertionNamesTheTokensRealm(t *testing.T) {
	realmA, realmB := tokentest.NewIssuer(t), tokentest.NewIssuer(t)
	ui := map[string]any{"sub": "same-id", "email": "someone@example.org", "preferred_username": "someone"}
	var payloads []map[string]any
	for _, is := range []*tokentest.Issuer{realmA, realmB} {
		rt := newRoute(t, confFor(is, ""))
		w, r := rt.do(loggedIn(is, "same-id", ui))
		require.Equal(t, 200, w.Code, w.Body.String())
		claims := identityClaims(t, r.Header().Get("X-Identity-Assertion"))
		assert.Equal(t, is.URL, claims[assertion.ClaimTokenIssuer], "token_iss is the verified token's iss")
		assert.Equal(t, "apisix-identity-runner", claims["iss"], "iss stays the route's assertion.issuer")
		payloads = append(payloads, claims)
	}
	assert.NotEqual(t, payloads[0], payloads[1], "users of two realms with one id get the same assertion")
}

// With verify_token false no token proved the realm: the assertion says
// nothing about it, and a verifier that expects one refuses it.
func TestUnverifiedAssertionHasNoTokenIssuer(t *testing.T) {
	rt := newRoute(t, `{"verify_token":false,"assertion":{"audience":"mitxonline"}}`)
	w, r := rt.do(map[string]string{"x-userinfo": userinfoHeader(map[string]any{"sub": "u1",
		"email": "u1@example.org", "email_verified": true})})
	require.Equal(t, 200, w.Code, w.Body.String())
	claims := identityClaims(t, r.Header().Get("X-Identity-Assertion"))
	assert.NotContains(t, claims, assertion.ClaimTokenIssuer)
}

// email_verified reaches the assertion as the token's boolean; a value that
// is not a boolean is left out (read as false), never guessed.
func TestAssertionCarriesEmailVerified(t *testing.T) {
	is := tokentest.NewIssuer(t)
	rt := newRoute(t, confFor(is, ""))
	for _, tc := range []struct {
		name  string
		value any
		want  any
	}{
		{"verified", true, true},
		{"unverified", false, false},
		{"a string is not a boolean", "true", nil},
		{"absent", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := fmt.Sprintf("u-%s", tc.name)
			ui := map[string]any{"sub": sub, "email": "someone@example.org"}
			if tc.value != nil {
				ui["email_verified"] = tc.value
			}
			w, r := rt.do(loggedIn(is, sub, ui))
			require.Equal(t, 200, w.Code, w.Body.String())
			claims := identityClaims(t, r.Header().Get("X-Identity-Assertion"))
			if tc.want == nil {
				assert.NotContains(t, claims, "email_verified")
				return
			}
			assert.Equal(t, tc.want, claims["email_verified"])
		})
	}
}

func TestSignedRealm(t *testing.T) {
	p := New(Deps{})
	for _, tc := range []struct {
		conf                  string
		iss, aud, tokenIssuer string
		ok                    bool
	}{
		{`{"issuer":"https://sso.example.org/realms/a","audience":"apisix","assertion":{"audience":"app"}}`,
			"apisix-identity-runner", "app", "https://sso.example.org/realms/a", true},
		{`{"issuer":"https://sso.example.org/realms/a","audience":"apisix","assertion":{"audience":"app","issuer":"gw"}}`,
			"gw", "app", "https://sso.example.org/realms/a", true},
		{`{"verify_token":false,"assertion":{"audience":"app"}}`, "apisix-identity-runner", "app", "", true},
		{`{"issuer":"https://sso.example.org/realms/a"}`, "", "", "", false},
		{`{"issuer":"https://sso.example.org/realms/a","audience":"apisix","assertion":{}}`, "", "", "", false},
	} {
		v, err := p.ParseConf([]byte(tc.conf))
		require.NoError(t, err)
		iss, aud, tokenIssuer, ok := v.(*Conf).SignedRealm()
		assert.Equal(t, []any{tc.iss, tc.aud, tc.tokenIssuer, tc.ok}, []any{iss, aud, tokenIssuer, ok}, tc.conf)
	}
}
