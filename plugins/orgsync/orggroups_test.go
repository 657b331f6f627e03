package orgsync

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// A Keycloak before 26.6 answers the organization-group call with a bare 404
// for a user who is still a member: a route asking for organization groups
// refuses (500) whatever on_keycloak_error says, rather than write a claim
// without them (a rule on a group would then see none, or the token's own);
// a route that does not ask is unchanged.
func TestOrganizationGroupsWithoutKeycloakSupportRefused(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	h.dir.orgGroupsErr = fmt.Errorf("keycloak: groups: %w", keycloak.ErrOrganizationGroupsUnavailable)
	for _, onError := range []string{OnErrorStale, OnErrorDeny} {
		conf := h.route(fmt.Sprintf(`{"claims":["organization","organization_groups"],"shape":"map","on_keycloak_error":%q}`, onError))
		w, r := h.do(conf, login("u-alice", "acme"), nil)
		assert.Equal(t, http.StatusInternalServerError, w.Code, onError)
		assert.Contains(t, w.Body.String(), ReasonMisconfigured)
		assert.Empty(t, r.Header().Get(identity.HeaderUserinfo), "nothing written for the upstream")
	}
	w, r := h.do(h.route(`{"shape":"map"}`), login("u-alice", "acme"), nil)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "acme", r.Header().Get("X-User-Orgs"))
}

// The same bare 404 for a user removed from the organization between the two
// calls: the organization is dropped, as a fresh login would not show it.
func TestOrganizationLeftDuringLoadIsDropped(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme, globex)
	h.dir.orgGroupsErr = keycloak.ErrOrganizationGroupsUnavailable
	h.dir.onOrgGroups = func() { h.dir.addUser("u-alice", true, globex) }
	conf := h.route(`{"claims":["organization","organization_groups"],"shape":"list"}`)
	w, r := h.do(conf, login("u-alice", "acme"), nil)
	require.Equal(t, http.StatusInternalServerError, w.Code, "globex is still there and answers the same 404: unsupported")

	h = newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	h.dir.orgGroupsErr = keycloak.ErrOrganizationGroupsUnavailable
	h.dir.onOrgGroups = func() { h.dir.addUser("u-alice", true) }
	w, r = h.do(h.route(`{"claims":["organization","organization_groups"],"shape":"list"}`), login("u-alice", "acme"), nil)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Empty(t, r.Header().Get("X-User-Orgs"))
}

// organization_groups with shape auto is refused: a login's claim cannot say
// whether the mapper adds ids, and with groups even the list form is an object.
func TestOrganizationGroupsNeedAnExplicitShape(t *testing.T) {
	_, err := New(Deps{}).parse([]byte(`{"claims":["organization","organization_groups"]}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"shape"`)
	for _, shape := range []string{ShapeList, ShapeMap, ShapeMapAttributes} {
		_, err := New(Deps{}).parse([]byte(fmt.Sprintf(`{"claims":["organization","organization_groups"],"shape":%q}`, shape)))
		assert.NoError(t, err, shape)
	}
}

// Groups are sorted as Keycloak's query sorts them, by the group's name.
func TestOrganizationGroupsOrderedByName(t *testing.T) {
	groups := []string{"/engineering", "/a/zeta", "/engineering/backend"}
	slices.SortFunc(groups, byGroupName)
	assert.Equal(t, []string{"/engineering/backend", "/engineering", "/a/zeta"}, groups)
}

func TestApplyOrganizationGroupsAndClientRoles(t *testing.T) {
	c, err := New(Deps{}).parse([]byte(`{"claims":["organization","organization_groups","client_roles"],"shape":"list"}`))
	require.NoError(t, err)
	snap := &snapshot{Orgs: []org{{ID: "org-1", Alias: "acme", Groups: []string{"/eng"}}, {ID: "org-2", Alias: "globex"}},
		ClientRoles: map[string][]string{"account": {"manage-account", "view-profile"}}}
	id := c.apply(loginWith(identity.Claims{"sub": []byte(`"u"`)}), snap, c.shape)
	orgs := id.Orgs()
	assert.JSONEq(t, `{"acme":{"groups":["/eng"]},"globex":{"groups":[]}}`, string(orgs.Encode(orgs.Shape)))
	assert.JSONEq(t, `{"account":{"roles":["manage-account","view-profile"]}}`, string(id.Claims()["resource_access"]))

	// No client role left: a fresh login has no resource_access at all.
	id = c.apply(loginWith(identity.Claims{"sub": []byte(`"u"`), "resource_access": []byte(`{"old":{"roles":["x"]}}`)}),
		&snapshot{}, c.shape)
	assert.NotContains(t, id.Claims(), "resource_access")
}

// The admin events of organization groups (26.6+) and of client role
// mappings name the users whose snapshots go.
func TestOrganizationGroupAndClientRoleEventsInvalidate(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	h.dir.addUser("u-bob", true, acme)
	for _, tc := range []struct {
		ev   keycloak.AdminEvent
		want []string
	}{
		{keycloak.AdminEvent{OperationType: "CREATE", ResourceType: keycloak.ResourceOrganizationGroupMembership,
			ResourcePath: "organizations/org-1/groups/g-1/members/u-alice"}, []string{"u-alice"}},
		{keycloak.AdminEvent{OperationType: "DELETE", ResourceType: keycloak.ResourceOrganizationGroupMembership,
			ResourcePath: "organizations/org-1/groups/g-1/members/u-alice"}, []string{"u-alice"}},
		{keycloak.AdminEvent{OperationType: "UPDATE", ResourceType: keycloak.ResourceOrganizationGroup,
			ResourcePath: "organizations/org-1/groups/g-1"}, []string{"u-alice", "u-bob"}},
		{keycloak.AdminEvent{OperationType: "DELETE", ResourceType: keycloak.ResourceOrganizationGroup,
			ResourcePath: "organizations/org-1/groups/g-1"}, []string{"u-alice", "u-bob"}},
		{keycloak.AdminEvent{OperationType: "CREATE", ResourceType: keycloak.ResourceClientRoleMapping,
			ResourcePath: "users/u-alice/role-mappings/clients/c-1"}, []string{"u-alice"}},
		{keycloak.AdminEvent{OperationType: "DELETE", ResourceType: keycloak.ResourceClientRoleMapping,
			ResourcePath: "users/u-bob/role-mappings/clients/c-1"}, []string{"u-bob"}},
	} {
		got, err := affectedUsers(t.Context(), h.dir, tc.ev)
		require.NoError(t, err)
		assert.ElementsMatch(t, tc.want, got, "%s %s %s", tc.ev.OperationType, tc.ev.ResourceType, tc.ev.ResourcePath)
	}
}

// A Keycloak before 26.6 answers 500 to an admin-events query naming the
// organization group events: the watcher asks for them only once Keycloak
// has shown it has organization groups, asks again after a while (an
// upgrade), and when it cannot tell, asks again at the next poll.
func TestWatcherAsksForOrganizationGroupEventsOnlyWhenKnown(t *testing.T) {
	h := newHarness(t)
	h.dir.noOrgGroups = true
	w, _ := newPoller(t, h, time.Now().UnixMilli())
	asked := func() bool {
		q := h.dir.adminEventQueries()
		return slices.Contains(q[len(q)-1].ResourceTypes, keycloak.ResourceOrganizationGroupMembership)
	}

	require.NoError(t, w.poll(t.Context()))
	assert.False(t, asked(), "an old Keycloak is not asked for what it refuses")
	assert.True(t, slices.Contains(h.dir.adminEventQueries()[0].ResourceTypes, keycloak.ResourceClientRoleMapping))
	require.NoError(t, w.poll(t.Context()))
	assert.Equal(t, 1, h.dir.probes, "not asked again at every poll")

	h.dir.noOrgGroups = false // upgraded
	w.orgGroupsProbed = time.Now().Add(-organizationGroupsReprobe)
	require.NoError(t, w.poll(t.Context()))
	assert.True(t, asked())
	require.NoError(t, w.poll(t.Context()))
	assert.Equal(t, 2, h.dir.probes, "once known, not asked again")

	h = newHarness(t)
	h.dir.orgGroupsProbeErr = errKeycloakDown
	w, _ = newPoller(t, h, time.Now().UnixMilli())
	require.NoError(t, w.poll(t.Context()))
	assert.False(t, asked())
	h.dir.orgGroupsProbeErr = nil
	require.NoError(t, w.poll(t.Context()))
	assert.True(t, asked(), "a Keycloak that could not tell is asked again at the next poll")
}
