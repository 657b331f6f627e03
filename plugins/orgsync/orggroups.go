package orgsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// errOrganizationGroupsUnsupported: the route refreshes organization groups
// and Keycloak has none (before 26.6). No value can be right, and the token's
// claim has no groups either, so the route refuses rather than serve a claim
// without them.
var errOrganizationGroupsUnsupported = errors.New("orgsync: the route refreshes organization_groups but Keycloak has no organization groups (26.6+ needed)")

// lastUnsupportedLog is when the refusal for want of organization groups was
// last logged (unix s): once a minute, not per request.
var lastUnsupportedLog atomic.Int64

func (c *Conf) variant() variant {
	return variant{account: c.checkAccount, groups: c.groups, roles: c.roles, orgGroups: c.orgGroups,
		clientRoles: c.clientRoles}
}

// loadOrganizationGroups adds to each organization the groups the user is
// in there. Keycloak answers a bare 404 both when it has no organization
// groups (before 26.6) and when the user is no longer a member (a removal
// between the two calls): the memberships are asked again to tell them apart,
// and an organization left or deleted meanwhile is dropped, as a fresh login
// would not show it either.
func (c *Conf) loadOrganizationGroups(ctx context.Context, sub string, orgs []org) ([]org, error) {
	kc := c.plugin.deps.Keycloak
	out := orgs[:0:0]
	for _, o := range orgs {
		groups, err := kc.OrganizationMemberGroups(ctx, o.ID, sub)
		switch {
		case errors.Is(err, keycloak.ErrOrganizationNotFound):
			continue
		case errors.Is(err, keycloak.ErrOrganizationGroupsUnavailable):
			still, err := c.stillMember(ctx, sub, o.ID)
			if err != nil {
				return nil, err
			}
			if still {
				return nil, errOrganizationGroupsUnsupported
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("orgsync: groups of %s in organization %s: %w", sub, o.Alias, err)
		}
		// Keycloak's query orders them by group name (JpaOrganizationProvider.
		// getOrganizationGroupsByMember), but a login served from its user
		// cache may list them otherwise: sorted by name, then path, equal
		// memberships render equal bytes and match an uncached login.
		slices.SortFunc(groups, byGroupName)
		o.Groups = groups
		out = append(out, o)
	}
	return out, nil
}

// byGroupName orders group paths by the group's own name, then by path.
func byGroupName(a, b string) int {
	if c := strings.Compare(a[strings.LastIndexByte(a, '/')+1:], b[strings.LastIndexByte(b, '/')+1:]); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func (c *Conf) stillMember(ctx context.Context, sub, orgID string) (bool, error) {
	orgs, err := c.plugin.deps.Keycloak.UserOrganizations(ctx, sub)
	if err != nil {
		return false, fmt.Errorf("orgsync: member organizations of %s: %w", sub, err)
	}
	for _, o := range orgs {
		if o.ID == orgID && o.Enabled {
			return true, nil
		}
	}
	return false, nil
}

// logUnsupported says once a minute why organization_groups routes refuse.
func logUnsupported() {
	if now := time.Now().Unix(); now-lastUnsupportedLog.Load() >= 60 {
		lastUnsupportedLog.Store(now)
		logger().Error("a route refreshes organization_groups but Keycloak has no organization groups " +
			"(Keycloak 26.6+ needed): its requests are refused with 500 until Keycloak is upgraded or the claim removed")
	}
}
