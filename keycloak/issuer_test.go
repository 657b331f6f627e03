package keycloak

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The realm's issuer defaults to the admin URL's; a public URL that differs
// is given whole, and one naming another realm is refused.
func TestOptionsIssuer(t *testing.T) {
	opts := func(issuer string) *Options {
		return &Options{URL: "http://keycloak:8080/", Realm: "olapps", ClientID: "id", ClientSecret: "s", Issuer: issuer}
	}
	c, err := New(opts(""))
	require.NoError(t, err)
	assert.Equal(t, "http://keycloak:8080/realms/olapps", c.Issuer())
	c, err = New(opts("https://sso.example.org/auth/realms/olapps/"))
	require.NoError(t, err)
	assert.Equal(t, "https://sso.example.org/auth/realms/olapps", c.Issuer(), "a trailing slash is dropped")
	for _, bad := range []string{"sso.example.org/realms/olapps", "https://sso.example.org/realms/other",
		"https://sso.example.org/realms/olapps?x=1", "https://sso.example.org/realms/olapps#f", "https://sso.example.org"} {
		_, err := New(opts(bad))
		assert.ErrorContains(t, err, "keycloak: options: Issuer", bad)
	}
}
