package keycloak

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// Verifiers hands routes with another leeway another verifier: a route that
// tolerates no skew must not inherit the tolerance of one that does.
func TestVerifiersKeepLeewaysApart(t *testing.T) {
	is := tokentest.NewIssuer(t)
	claims := is.Claims("u")
	claims["exp"] = time.Now().Add(-10 * time.Second).Unix()
	token := is.Sign(claims)

	set := NewVerifiers(0)
	lenient, err := set.For(is.URL, is.JWKSURL, time.Minute)
	require.NoError(t, err)
	strict, err := set.For(is.URL, is.JWKSURL, 0)
	require.NoError(t, err)

	_, err = lenient.Verify(t.Context(), token, "")
	require.NoError(t, err, "10 s past exp is within a minute's leeway")
	_, err = strict.Verify(t.Context(), token, "")
	assert.Equal(t, ReasonExpired, reasonOf(t, err), "no leeway: expired")

	again, err := set.For(is.URL, is.JWKSURL, 0)
	require.NoError(t, err)
	assert.Same(t, strict, again, "equal settings share a verifier (and its verdicts)")
}

// The leeway is what it says and no more: a token expired longer ago than
// the leeway is refused, one within it accepted, on the first verification
// and on a cached verdict alike.
func TestLeewayBoundsExpiryExactly(t *testing.T) {
	is := tokentest.NewIssuer(t)
	now := time.Now()
	v := NewTokenVerifier(is.URL, NewKeySet(is.JWKSURL, nil), &TokenVerifierOptions{Leeway: 5 * time.Second,
		Now: func() time.Time { return now }})
	token := func(expiredAgo time.Duration) string {
		c := is.Claims("u")
		c["iat"] = now.Add(-time.Hour).Unix()
		c["exp"] = now.Add(-expiredAgo).Unix()
		return is.Sign(c)
	}
	_, err := v.Verify(t.Context(), token(3*time.Second), "")
	assert.NoError(t, err, "3 s past exp, 5 s leeway")
	_, err = v.Verify(t.Context(), token(7*time.Second), "")
	assert.Equal(t, ReasonExpired, reasonOf(t, err), "7 s past exp, 5 s leeway")

	cached := token(0)
	_, err = v.Verify(t.Context(), cached, "")
	require.NoError(t, err)
	now = now.Add(7 * time.Second)
	_, err = v.Verify(t.Context(), cached, "")
	assert.Equal(t, ReasonExpired, reasonOf(t, err), "the cached verdict expires with the same leeway")
}
