package keycloak

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// logoutClaims are what Keycloak 26.5 puts in a logout token for the apisix
// client.
func logoutClaims(is *tokentest.Issuer) map[string]any {
	return map[string]any{
		"iss": is.URL, "aud": "apisix", "typ": "Logout", "iat": time.Now().Unix(), "jti": "jti-1",
		"sub": "u-alice", "sid": "sid-1",
		"events": map[string]any{BackchannelLogoutEvent: map[string]any{}},
	}
}

func TestVerifyLogoutAcceptsKeycloaksToken(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	tok, err := v.VerifyLogout(context.Background(), is.Sign(logoutClaims(is)), "apisix")
	require.NoError(t, err)
	assert.Equal(t, "u-alice", tok.Subject)
	assert.Equal(t, "sid-1", tok.SessionID)
	assert.Equal(t, "jti-1", tok.JTI)
	assert.Equal(t, is.URL, tok.Issuer)
	assert.WithinDuration(t, tok.IssuedAt.Add(MaxLogoutTokenAge), tok.Until, time.Second)
}

func TestVerifyLogoutAcceptsEitherSidOrSub(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	for _, drop := range []string{"sid", "sub"} {
		c := logoutClaims(is)
		delete(c, drop)
		_, err := v.VerifyLogout(context.Background(), is.Sign(c), "apisix")
		assert.NoError(t, err, "without %s", drop)
	}
}

func TestVerifyLogoutUntilIsBoundedByExp(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	c := logoutClaims(is)
	exp := time.Now().Add(time.Minute).Unix()
	c["exp"] = exp
	tok, err := v.VerifyLogout(context.Background(), is.Sign(c), "apisix")
	require.NoError(t, err)
	assert.Equal(t, exp, tok.Until.Unix())
}

func signHS256(t *testing.T, secret []byte, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, nil)
	require.NoError(t, err)
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	obj, err := signer.Sign(payload)
	require.NoError(t, err)
	s, err := obj.CompactSerialize()
	require.NoError(t, err)
	return s
}

func unsigned(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	require.NoError(t, err)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"logout+jwt"}`)) + "." + enc(payload) + "."
}

func TestVerifyLogoutRefuses(t *testing.T) {
	is := tokentest.NewIssuer(t)
	other := tokentest.NewIssuer(t)
	now := time.Now()
	with := func(change func(map[string]any)) func() string {
		return func() string {
			c := logoutClaims(is)
			change(c)
			return is.Sign(c)
		}
	}
	cases := []struct {
		name   string
		token  func() string
		reason string
	}{
		{"of another realm", func() string { return other.Sign(logoutClaims(other)) }, ReasonWrongIssuer},
		{"of another realm claiming this one", func() string { return other.Sign(logoutClaims(is)) }, ReasonUnknownKey},
		{"for another client", with(func(c map[string]any) { c["aud"] = "other-app" }), ReasonWrongAudience},
		{"without aud", with(func(c map[string]any) { delete(c, "aud") }), ReasonWrongAudience},
		{"expired", with(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), ReasonExpired},
		{"too old", with(func(c map[string]any) { c["iat"] = now.Add(-MaxLogoutTokenAge - time.Minute).Unix() }), ReasonTooOld},
		{"issued in the future", with(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }), ReasonNotYetValid},
		{"without iat", with(func(c map[string]any) { delete(c, "iat") }), ReasonNoIssuedAt},
		{"without jti", with(func(c map[string]any) { delete(c, "jti") }), ReasonNoJTI},
		{"without sid and sub", with(func(c map[string]any) { delete(c, "sid"); delete(c, "sub") }), ReasonNoSession},
		{"with a nonce", with(func(c map[string]any) { c["nonce"] = "n-1" }), ReasonNonce},
		{"without events", with(func(c map[string]any) { delete(c, "events") }), ReasonMissingEvents},
		{"with another event", with(func(c map[string]any) {
			c["events"] = map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}
		}), ReasonMissingEvents},
		{"with the event not an object", with(func(c map[string]any) {
			c["events"] = map[string]any{BackchannelLogoutEvent: "yes"}
		}), ReasonMissingEvents},
		{"alg none", func() string { return unsigned(t, logoutClaims(is)) }, ReasonMalformed},
		{"HS256 with the client secret", func() string { return signHS256(t, []byte("apisix-test-secret-0123456789abcdef"), logoutClaims(is)) },
			ReasonMalformed},
		{"an access token", func() string {
			c := is.Claims("u-alice")
			c["aud"] = "apisix"
			c["sid"] = "sid-1"
			c["jti"] = "j"
			return is.Sign(c)
		}, ReasonWrongType},
		{"an ID token", func() string {
			c := is.Claims("u-alice")
			c["typ"] = "ID"
			c["aud"] = "apisix"
			c["sid"] = "sid-1"
			c["jti"] = "j"
			return is.Sign(c)
		}, ReasonWrongType},
		{"an access token dressed with events", with(func(c map[string]any) { c["typ"] = "Bearer" }), ReasonWrongType},
		{"an access token without typ", func() string {
			c := is.Claims("u-alice")
			delete(c, "typ")
			c["aud"] = "apisix"
			c["jti"] = "j"
			return is.Sign(c)
		}, ReasonMissingEvents},
		{"header typ of an access token", func() string { return is.SignType("at+jwt", logoutClaims(is)) }, ReasonWrongType},
		{"not a JWS", func() string { return "abc" }, ReasonMalformed},
	}
	v := newVerifier(t, is)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.VerifyLogout(context.Background(), tc.token(), "apisix")
			require.Error(t, err)
			assert.Equal(t, tc.reason, reasonOf(t, err))
		})
	}
}

func TestVerifyLogoutNeedsAClient(t *testing.T) {
	is := tokentest.NewIssuer(t)
	_, err := newVerifier(t, is).VerifyLogout(context.Background(), is.Sign(logoutClaims(is)), "")
	assert.Equal(t, ReasonWrongAudience, reasonOf(t, err))
}

func TestVerifyLogoutAcceptsLogoutHeaderTypes(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	for _, typ := range []string{"logout+jwt", "application/logout+jwt", "JWT", "Logout+JWT"} {
		_, err := v.VerifyLogout(context.Background(), is.SignType(typ, logoutClaims(is)), "apisix")
		assert.NoError(t, err, typ)
	}
	for _, typ := range []string{"at+jwt", "JWS", "secevent+jwt"} {
		_, err := v.VerifyLogout(context.Background(), is.SignType(typ, logoutClaims(is)), "apisix")
		assert.Error(t, err, typ)
	}
}

// userinfo checks revocations against the access token's session and iat:
// sid (Keycloak 26), or session_state where an older Keycloak has no sid.
func TestAccessTokenNamesItsSession(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	c := is.Claims("u")
	c["sid"] = "sid-1"
	tok, err := v.Verify(context.Background(), is.Sign(c), "")
	require.NoError(t, err)
	assert.Equal(t, "sid-1", tok.SessionID)
	assert.Equal(t, c["iat"], tok.IssuedAt.Unix())

	c = is.Claims("u")
	c["session_state"] = "state-1"
	tok, err = v.Verify(context.Background(), is.Sign(c), "")
	require.NoError(t, err)
	assert.Equal(t, "state-1", tok.SessionID)
}
