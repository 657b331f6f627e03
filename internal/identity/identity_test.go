package identity

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What a plugin gets from an identity, or makes of it, never changes the
// identity other requests of the login share.
func TestIdentityIsAValue(t *testing.T) {
	id, err := New(7, Claims{"sub": json.RawMessage(`"u1"`), "groups": json.RawMessage(`["/a"]`),
		"organization": json.RawMessage(`{"acme":{"id":"o1","tier":["gold"]}}`)}, "https://sso.example.org/realms/r", true)
	require.NoError(t, err)

	claims := id.Claims()
	claims["groups"] = json.RawMessage(`["/admins"]`)
	orgs := id.Orgs()
	orgs.List[0].Alias = "evil"
	orgs.List[0].Attributes["tier"][0] = "platinum"

	refreshed := id.WithClaim("groups", json.RawMessage(`["/b"]`)).WithOrgs(Organizations{Shape: ShapeList,
		List: []Organization{{Alias: "globex"}}})

	groups, _ := id.Claim("groups")
	assert.JSONEq(t, `["/a"]`, string(groups))
	assert.JSONEq(t, `{"acme":{"id":"o1","tier":["gold"]}}`, string(id.Orgs().Encode(ShapeMapAttributes)))
	assert.Equal(t, ShapeMapAttributes, id.OrgsShape())
	groups, _ = refreshed.Claim("groups")
	assert.JSONEq(t, `["/b"]`, string(groups))
	assert.Equal(t, "globex", refreshed.Orgs().HeaderValue())
	assert.Equal(t, id.Login(), refreshed.Login())
	assert.Equal(t, "u1", refreshed.Subject())
	assert.True(t, refreshed.Verified())
}

func TestNewRefusesAMalformedOrganizationClaim(t *testing.T) {
	_, err := New(1, Claims{"sub": json.RawMessage(`"u1"`), "organization": json.RawMessage(`[1]`)}, "", false)
	assert.ErrorIs(t, err, ErrMalformed)
}

// Organization groups survive the copies an identity makes, and a group
// list changed by a caller is not the identity's.
func TestOrganizationGroupsSurviveCopies(t *testing.T) {
	id, err := New(7, Claims{"sub": json.RawMessage(`"u1"`)}, "", true)
	require.NoError(t, err)
	withGroups := id.WithOrgs(Organizations{Shape: ShapeList, List: []Organization{
		{Alias: "acme", Groups: []string{"/eng"}}, {Alias: "globex", Groups: []string{}}}})
	orgs := withGroups.Orgs()
	assert.JSONEq(t, `{"acme":{"groups":["/eng"]},"globex":{"groups":[]}}`, string(orgs.Encode(ShapeList)))
	orgs.List[0].Groups[0] = "/admins"
	again := withGroups.Orgs()
	assert.JSONEq(t, `{"acme":{"groups":["/eng"]},"globex":{"groups":[]}}`, string(again.Encode(ShapeList)))
}
