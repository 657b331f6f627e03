package keycloak

import (
	"encoding/json"
	"fmt"

	"context"
	"encoding/base64"
	"errors"
	jose "github.com/go-jose/go-jose/v4"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

func newVerifier(t *testing.T, is *tokentest.Issuer) *TokenVerifier {
	t.Helper()
	return NewTokenVerifier(is.URL, NewKeySet(is.JWKSURL, &KeySetOptions{MinRefreshInterval: time.Hour}), nil)
}

func reasonOf(t *testing.T, err error) string {
	t.Helper()
	var te *TokenError
	require.True(t, errors.As(err, &te), "want *TokenError, got %v", err)
	return te.Reason
}

func TestVerifyAcceptsAValidToken(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	claims := is.Claims("user-1")
	claims["email"] = "alice@example.org"
	tok, err := v.Verify(context.Background(), is.Sign(claims), "")
	require.NoError(t, err)
	assert.Equal(t, "user-1", tok.Subject)
	assert.Equal(t, is.URL, tok.Issuer)
	assert.JSONEq(t, `"alice@example.org"`, string(tok.Claims["email"]))
}

func TestVerifyRefuses(t *testing.T) {
	is := tokentest.NewIssuer(t)
	other := tokentest.NewIssuer(t)
	now := time.Now()
	cases := []struct {
		name   string
		token  func() string
		aud    string
		reason string
	}{
		{"expired", func() string {
			c := is.Claims("u")
			c["exp"] = now.Add(-time.Hour).Unix()
			return is.Sign(c)
		}, "", ReasonExpired},
		{"from another issuer", func() string {
			c := other.Claims("u")
			return is.Sign(c)
		}, "", ReasonWrongIssuer},
		{"signed by an unknown key", func() string {
			return tokentest.SignWith(t, tokentest.NewKey(t), "nobody-knows-me", is.Claims("u"))
		}, "", ReasonUnknownKey},
		{"signed by an unknown key reusing a known kid", func() string {
			// Known kid, wrong key: the signature check must fail.
			tok := is.Sign(is.Claims("u"))
			return tokentest.SignWith(t, tokentest.NewKey(t), currentKid(t, tok), is.Claims("u"))
		}, "", ReasonBadSignature},
		{"an ID token", func() string {
			c := is.Claims("u")
			c["typ"] = "ID"
			return is.Sign(c)
		}, "", ReasonWrongType},
		{"not yet valid", func() string {
			c := is.Claims("u")
			c["nbf"] = now.Add(time.Hour).Unix()
			return is.Sign(c)
		}, "", ReasonNotYetValid},
		{"without exp", func() string {
			c := is.Claims("u")
			delete(c, "exp")
			return is.Sign(c)
		}, "", ReasonMalformed},
		{"without sub", func() string {
			c := is.Claims("u")
			delete(c, "sub")
			return is.Sign(c)
		}, "", ReasonMalformed},
		{"wrong audience", func() string { return is.Sign(is.Claims("u")) }, "mitxonline", ReasonWrongAudience},
		{"garbage", func() string { return "not-a-token" }, "", ReasonMalformed},
		{"alg none", func() string {
			return "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0."
		}, "", ReasonMalformed},
		{"tampered payload", func() string {
			tok := is.Sign(is.Claims("u"))
			parts := strings.Split(tok, ".")
			evil := is.Sign(is.Claims("admin"))
			return parts[0] + "." + strings.Split(evil, ".")[1] + "." + parts[2]
		}, "", ReasonBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, is)
			_, err := v.Verify(context.Background(), tc.token(), tc.aud)
			require.Error(t, err)
			assert.Equal(t, tc.reason, reasonOf(t, err))
		})
	}
}

func currentKid(t *testing.T, token string) string {
	t.Helper()
	// The kid is in the protected header of any token the issuer signed.
	hdr := strings.Split(token, ".")[0]
	b, err := decodeSegment(hdr)
	require.NoError(t, err)
	i := strings.Index(string(b), `"kid":"`)
	require.GreaterOrEqual(t, i, 0)
	rest := string(b)[i+7:]
	return rest[:strings.IndexByte(rest, '"')]
}

func TestVerifyAudience(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	c := is.Claims("u")
	c["aud"] = []string{"account", "mitxonline"}
	_, err := v.Verify(context.Background(), is.Sign(c), "mitxonline")
	assert.NoError(t, err, "aud list holds it")
	c["aud"] = "mitxonline"
	_, err = v.Verify(context.Background(), is.Sign(c), "mitxonline")
	assert.NoError(t, err, "aud string")
	_, err = v.Verify(context.Background(), is.Sign(is.Claims("u")), "apisix")
	assert.NoError(t, err, "azp equals the audience")
}

func TestVerifyCachesVerdictsAndFetchesKeysOnce(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	tok := is.Sign(is.Claims("u"))
	for i := 0; i < 50; i++ {
		_, err := v.Verify(context.Background(), tok, "")
		require.NoError(t, err)
	}
	assert.EqualValues(t, 1, is.Fetches.Load())
	assert.Equal(t, 1, v.cache.Len())
}

func TestVerifyCachedTokenStillExpires(t *testing.T) {
	is := tokentest.NewIssuer(t)
	now := time.Now()
	v := NewTokenVerifier(is.URL, NewKeySet(is.JWKSURL, nil), &TokenVerifierOptions{Leeway: time.Second, Now: func() time.Time { return now }})
	c := is.Claims("u")
	c["exp"] = now.Add(10 * time.Second).Unix()
	tok := is.Sign(c)
	_, err := v.Verify(context.Background(), tok, "")
	require.NoError(t, err)
	now = now.Add(20 * time.Second)
	_, err = v.Verify(context.Background(), tok, "")
	assert.Equal(t, ReasonExpired, reasonOf(t, err))
}

func TestKeyRotationIsPickedUpOnUnknownKid(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := NewTokenVerifier(is.URL, NewKeySet(is.JWKSURL, &KeySetOptions{MinRefreshInterval: time.Millisecond}), nil)
	_, err := v.Verify(context.Background(), is.Sign(is.Claims("u")), "")
	require.NoError(t, err)
	is.Rotate()
	time.Sleep(5 * time.Millisecond)
	_, err = v.Verify(context.Background(), is.Sign(is.Claims("u2")), "")
	require.NoError(t, err, "new kid triggers a refresh")
	assert.EqualValues(t, 2, is.Fetches.Load())
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is) // MinRefreshInterval: 1h
	_, err := v.Verify(context.Background(), is.Sign(is.Claims("u")), "")
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		_, err := v.Verify(context.Background(), tokentest.SignWith(t, tokentest.NewKey(t), "made-up", is.Claims("u")), "")
		assert.Equal(t, ReasonUnknownKey, reasonOf(t, err))
	}
	assert.EqualValues(t, 1, is.Fetches.Load(), "made-up kids must not make us hammer the JWKS endpoint")
}

func TestKeysUnavailable(t *testing.T) {
	is := tokentest.NewIssuer(t)
	is.SetDown(true)
	v := newVerifier(t, is)
	_, err := v.Verify(context.Background(), is.Sign(is.Claims("u")), "")
	assert.Equal(t, ReasonKeysUnavailable, reasonOf(t, err))
}

func TestVerifierSharedPerIssuer(t *testing.T) {
	set := NewVerifiers(0)
	a, err := set.For("https://sso.example.org/realms/a", JWKSURL("https://sso.example.org/realms/a"), time.Second)
	require.NoError(t, err)
	b, _ := set.For("https://sso.example.org/realms/a", JWKSURL("https://sso.example.org/realms/a"), time.Second)
	c, _ := set.For("https://sso.example.org/realms/b", JWKSURL("https://sso.example.org/realms/b"), time.Second)
	assert.Same(t, a, b)
	assert.NotSame(t, a, c)
	assert.Equal(t, "https://sso.example.org/realms/a/protocol/openid-connect/certs", JWKSURL("https://sso.example.org/realms/a/"))
}

func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(s)
}

func TestVerifierSetIsBounded(t *testing.T) {
	set := NewVerifiers(0)
	for i := 0; i < maxVerifiers; i++ {
		_, err := set.For(fmt.Sprintf("https://sso.example.org/realms/r%d", i), "https://sso.example.org/certs", time.Second)
		require.NoError(t, err)
	}
	_, err := set.For("https://sso.example.org/realms/one-too-many", "https://sso.example.org/certs", time.Second)
	assert.Error(t, err)
}

// An aud entry spelled "azp:<client>" once satisfied audience <client>: the
// audience and azp checks are separate.
func TestVerifyAudienceAndAzpAreSeparate(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	c := is.Claims("u")
	c["azp"] = "someone-else"
	c["aud"] = []string{"azp:mitxonline"}
	_, err := v.Verify(context.Background(), is.Sign(c), "mitxonline")
	assert.Equal(t, ReasonWrongAudience, reasonOf(t, err))
	c["aud"] = "account"
	c["azp"] = "mitxonline"
	_, err = v.Verify(context.Background(), is.Sign(c), "mitxonline")
	assert.NoError(t, err, "azp equal to the audience is accepted")
}

// HMAC algorithms are never accepted: a token "signed" with HS256 using the
// issuer's public key as the secret is the classic key-confusion forgery.
func TestVerifyRefusesHMACTokens(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	for _, alg := range []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512} {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: []byte(strings.Repeat("k", 64))},
			(&jose.SignerOptions{}).WithHeader("kid", currentKid(t, is.Sign(is.Claims("u")))))
		require.NoError(t, err)
		payload, _ := json.Marshal(is.Claims("u"))
		obj, err := signer.Sign(payload)
		require.NoError(t, err)
		raw, err := obj.CompactSerialize()
		require.NoError(t, err)
		_, err = v.Verify(context.Background(), raw, "")
		assert.Equal(t, ReasonMalformed, reasonOf(t, err), "alg %s", alg)
	}
}

func TestVerifyID(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := newVerifier(t, is)
	id := is.Claims("u")
	id["typ"] = "ID"
	id["aud"] = "apisix"
	tok, err := v.VerifyID(context.Background(), is.Sign(id), "apisix")
	require.NoError(t, err)
	assert.Equal(t, "u", tok.Subject)

	_, err = v.VerifyID(context.Background(), is.Sign(id), "another-client")
	assert.Equal(t, ReasonWrongAudience, reasonOf(t, err))
	_, err = v.VerifyID(context.Background(), is.Sign(is.Claims("u")), "apisix")
	assert.Equal(t, ReasonWrongType, reasonOf(t, err), "an access token is not an ID token")
	_, err = v.Verify(context.Background(), is.Sign(id), "")
	assert.Equal(t, ReasonWrongType, reasonOf(t, err), "an ID token is not an access token")
}

func TestZeroLeewayIsZero(t *testing.T) {
	is := tokentest.NewIssuer(t)
	now := time.Now()
	v := NewTokenVerifier(is.URL, NewKeySet(is.JWKSURL, nil), &TokenVerifierOptions{Leeway: 0, Now: func() time.Time { return now }})
	c := is.Claims("u")
	c["exp"] = now.Add(-2 * time.Second).Unix()
	_, err := v.Verify(context.Background(), is.Sign(c), "")
	assert.Equal(t, ReasonExpired, reasonOf(t, err), "expired 2s ago with no leeway")
}

func TestVerdictCacheIsBoundedInBytes(t *testing.T) {
	is := tokentest.NewIssuer(t)
	v := NewTokenVerifier(is.URL, NewKeySet(is.JWKSURL, nil), &TokenVerifierOptions{Leeway: time.Second, CacheBytes: 64 << 10})
	for i := 0; i < 400; i++ {
		c := is.Claims(fmt.Sprintf("user-%d", i))
		c["padding"] = strings.Repeat("x", 1000)
		_, err := v.Verify(context.Background(), is.Sign(c), "")
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, v.cache.Bytes(), int64(64<<10))
	assert.Greater(t, v.cache.Len(), 10)
}
