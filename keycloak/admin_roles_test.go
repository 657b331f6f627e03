package keycloak

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// hasOrganizationGroups asks the test Keycloak, as its admin, whether it has
// organization groups (26.6+).
func hasOrganizationGroups(t *testing.T) bool {
	t.Helper()
	s := kctest.Env(t)
	req, err := http.NewRequest(http.MethodGet, s.URL+"/admin/realms/"+s.Realm+"/organizations/"+
		kctest.OrgIDByAlias(t, "acme")+"/groups", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+kctest.AdminToken(t))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// The runner's service account tells a Keycloak with organization groups
// from one without, and reads a member's groups within an organization: none
// for a member of no group, ErrOrganizationGroupsUnavailable for a user who
// is not a member (26.6+) and for everyone before 26.6.
func TestRealOrganizationGroups(t *testing.T) {
	c := realClient(t)
	ctx := context.Background()
	want := hasOrganizationGroups(t)
	got, err := c.OrganizationGroupsSupported(ctx)
	require.NoError(t, err)
	require.Equal(t, want, got, "OrganizationGroupsSupported")
	acme := kctest.OrgIDByAlias(t, "acme")
	member := kctest.CreateUser(t, "orggroups-member")
	kctest.AddMember(t, acme, member.ID)
	groups, err := c.OrganizationMemberGroups(ctx, acme, member.ID)
	if want {
		require.NoError(t, err)
		assert.Equal(t, []string{}, groups, "a member of no group")
	} else {
		assert.ErrorIs(t, err, ErrOrganizationGroupsUnavailable, "before 26.6")
	}
	outsider := kctest.CreateUser(t, "orggroups-outsider")
	_, err = c.OrganizationMemberGroups(ctx, acme, outsider.ID)
	assert.ErrorIs(t, err, ErrOrganizationGroupsUnavailable, "a non-member")
	if want {
		_, err = c.OrganizationMemberGroups(ctx, "00000000-0000-0000-0000-000000000000", member.ID)
		assert.ErrorIs(t, err, ErrOrganizationNotFound, "an unknown organization")
	}
}
