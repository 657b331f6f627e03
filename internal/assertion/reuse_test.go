package assertion

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func claimsFor(sub string) *Claims {
	return &Claims{Issuer: "gw", Audience: "app", Subject: sub, TokenIssuer: "https://sso.example.org/realms/a",
		Organization: json.RawMessage(`{"acme":{"id":"1"}}`), OrganizationSource: "keycloak",
		Profile: map[string]json.RawMessage{"email": json.RawMessage(`"a@example.org"`)}}
}

func TestReuserSignsOncePerIdentityUntilHalfTTL(t *testing.T) {
	keys, err := Generate()
	require.NoError(t, err)
	r := NewReuser(0)
	now := time.Unix(1_800_000_000, 0)
	r.now = func() time.Time { return now }

	first, fresh, _, err := r.Sign(keys, claimsFor("u1"), time.Minute)
	require.NoError(t, err)
	assert.True(t, fresh)
	now = now.Add(29 * time.Second)
	again, fresh, _, err := r.Sign(keys, claimsFor("u1"), time.Minute)
	require.NoError(t, err)
	assert.False(t, fresh, "reused before half the ttl")
	assert.Equal(t, first, again)

	now = now.Add(2 * time.Second)
	later, fresh, _, err := r.Sign(keys, claimsFor("u1"), time.Minute)
	require.NoError(t, err)
	assert.True(t, fresh, "past half the ttl a new assertion is signed")
	assert.NotEqual(t, first, later)
}

func TestReuserNewAssertionWhenAnythingChanges(t *testing.T) {
	keys, err := Generate()
	require.NoError(t, err)
	r := NewReuser(0)
	base, _, _, err := r.Sign(keys, claimsFor("u1"), time.Minute)
	require.NoError(t, err)

	orgs := claimsFor("u1")
	orgs.Organization = json.RawMessage(`{"acme":{"id":"1"},"globex":{"id":"2"}}`)
	source := claimsFor("u1")
	source.OrganizationSource = "stale"
	aud := claimsFor("u1")
	aud.Audience = "other-app"
	email := claimsFor("u1")
	email.Profile["email"] = json.RawMessage(`"b@example.org"`)
	verified := claimsFor("u1")
	verified.Profile["email_verified"] = json.RawMessage(`true`)
	for name, c := range map[string]*Claims{"organizations": orgs, "source": source, "audience": aud,
		"profile": email, "email_verified": verified, "subject": claimsFor("u2")} {
		jws, fresh, _, err := r.Sign(keys, c, time.Minute)
		require.NoError(t, err)
		assert.True(t, fresh, name)
		assert.NotEqual(t, base, jws, name)
	}
	rotated, err := Generate()
	require.NoError(t, err)
	jws, fresh, _, err := r.Sign(rotated, claimsFor("u1"), time.Minute)
	require.NoError(t, err)
	assert.True(t, fresh, "a new key signs at once")
	assert.NotEqual(t, base, jws)
}

// Two realms may each have a user of the same id: the assertion for one must
// never be handed out for the other, however equal everything else is.
func TestReuserNeverSharesAnAssertionAcrossRealms(t *testing.T) {
	keys, err := Generate()
	require.NoError(t, err)
	r := NewReuser(0)
	for _, realm := range []string{"https://sso.example.org/realms/a", "https://sso.example.org/realms/b", "",
		"https://sso.example.org/realms/a"} {
		c := claimsFor("same-id")
		c.TokenIssuer = realm
		jws, _, _, err := r.Sign(keys, c, time.Minute)
		require.NoError(t, err)
		parts := strings.Split(jws, ".")
		require.Len(t, parts, 3)
		body, err := base64.RawURLEncoding.DecodeString(parts[1])
		require.NoError(t, err)
		var payload map[string]any
		require.NoError(t, json.Unmarshal(body, &payload))
		if realm == "" {
			assert.NotContains(t, payload, ClaimTokenIssuer, "no verified token, no token_iss")
		} else {
			assert.Equal(t, realm, payload[ClaimTokenIssuer], "realm %q got another realm's assertion", realm)
		}
	}
}

func TestReuserBoundedInBytes(t *testing.T) {
	keys, err := Generate()
	require.NoError(t, err)
	r := NewReuser(64 << 10)
	for i := 0; i < 1000; i++ {
		_, _, _, err := r.Sign(keys, claimsFor(string(rune('a'+i%26))+time.Duration(i).String()), time.Minute)
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, r.cache.Bytes(), int64(64<<10))
}
