package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ErrOrganizationGroupsUnavailable: Keycloak answered a generic 404 to the
// organization-group membership call. Keycloak before 26.6 has no such call;
// 26.6+ answers the same way for a user who is not (or no longer) a member.
var ErrOrganizationGroupsUnavailable = errors.New("organization groups not available (Keycloak before 26.6, or the user left the organization)")

// OrganizationMemberGroups returns the paths of the organization groups
// userID is a direct member of within the organization orgID, as Keycloak
// 26.6+ lists them (GET organizations/{org}/members/{user}/groups) and as its
// organization-group membership mapper writes them into the organization
// claim: relative to the organization, e.g. "/engineering/backend". All pages.
// Errors: ErrOrganizationNotFound, ErrOrganizationsDisabled,
// ErrOrganizationGroupsUnavailable, ErrCoolingOff, *StatusError.
func (c *Client) OrganizationMemberGroups(ctx context.Context, orgID, userID string) ([]string, error) {
	if orgID == "" || userID == "" {
		return nil, fmt.Errorf("keycloak: organization groups of user: %w", ErrOrganizationGroupsUnavailable)
	}
	paths := []string{}
	for first := 0; ; first += pageSize {
		var page []struct {
			Name string `json:"name"`
			Path string `json:"path"`
		}
		q := url.Values{"briefRepresentation": {"true"}, "first": {strconv.Itoa(first)}, "max": {strconv.Itoa(pageSize)}}
		err := c.getJSON(ctx, EndpointOrganizationMemberGroups,
			"organizations/"+url.PathEscape(orgID)+"/members/"+url.PathEscape(userID)+"/groups", q, &page)
		if err != nil {
			return nil, fmt.Errorf("keycloak: groups of user %s in organization %s: %w", userID, orgID, translateOrgGroups404(err))
		}
		for _, g := range page {
			if g.Path != "" {
				paths = append(paths, g.Path)
			} else {
				paths = append(paths, "/"+g.Name)
			}
		}
		if len(page) < pageSize {
			return paths, nil
		}
	}
}

// translateOrgGroups404 tells Keycloak's named 404s (no such organization,
// organizations off) from the bare one a missing route or a non-member gets.
func translateOrgGroups404(err error) error {
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusNotFound {
		return err
	}
	msg := strings.ToLower(se.Message)
	switch {
	case strings.Contains(msg, "organizations not enabled"):
		return ErrOrganizationsDisabled
	case strings.Contains(msg, "organization not found"):
		return ErrOrganizationNotFound
	}
	return ErrOrganizationGroupsUnavailable
}

// UserClientRoles returns userID's effective client roles (composites and
// group memberships expanded), by client id, as a token of a client with full
// scope carries them in resource_access: only clients where the user holds a
// role appear. It lists the realm's clients and asks, per client, for the
// user's composite role mappings: one call per client, and one per page of
// clients. The service account needs realm-management view-clients (with
// query-clients alone Keycloak lists no client and refuses the mappings).
// Errors: ErrUserNotFound, ErrCoolingOff, *StatusError.
func (c *Client) UserClientRoles(ctx context.Context, userID string) (map[string][]string, error) {
	if userID == "" {
		return nil, fmt.Errorf("keycloak: client roles of user: %w", ErrUserNotFound)
	}
	type client struct {
		ID       string `json:"id"`
		ClientID string `json:"clientId"`
	}
	var clients []client
	for first := 0; ; first += pageSize {
		var page []client
		q := url.Values{"first": {strconv.Itoa(first)}, "max": {strconv.Itoa(pageSize)}}
		if err := c.getJSON(ctx, EndpointClients, "clients", q, &page); err != nil {
			return nil, fmt.Errorf("keycloak: clients of the realm: %w", err)
		}
		clients = append(clients, page...)
		if len(page) < pageSize {
			break
		}
	}
	out := map[string][]string{}
	for _, cl := range clients {
		if cl.ID == "" || cl.ClientID == "" {
			continue
		}
		var roles []struct {
			Name string `json:"name"`
		}
		q := url.Values{"briefRepresentation": {"true"}}
		path := "users/" + url.PathEscape(userID) + "/role-mappings/clients/" + url.PathEscape(cl.ID) + "/composite"
		if err := c.getJSON(ctx, EndpointUserClientRoles, path, q, &roles); err != nil {
			var se *StatusError
			if errors.As(err, &se) && se.Status == http.StatusNotFound && strings.Contains(strings.ToLower(se.Message), "client not found") {
				// Deleted between the listing and now: it grants nothing.
				continue
			}
			return nil, fmt.Errorf("keycloak: roles of user %s in client %s: %w", userID, cl.ClientID, translate404(err, ErrUserNotFound))
		}
		if len(roles) == 0 {
			continue
		}
		names := make([]string, 0, len(roles))
		for _, r := range roles {
			names = append(names, r.Name)
		}
		sort.Strings(names)
		out[cl.ClientID] = names
	}
	return out, nil
}

// OrganizationGroupsSupported tells whether Keycloak has organization groups
// (26.6+), by asking for the groups of one organization of the realm: 200 on
// 26.6+, a bare 404 before. false without error also when the realm has
// organizations off or none yet (nothing to ask about). An error means it
// could not tell. It exists so that the admin-event watcher never names the
// 26.6 event types to an older Keycloak, which answers such a query with 500
// (and logs a stack trace).
func (c *Client) OrganizationGroupsSupported(ctx context.Context) (bool, error) {
	var orgs []struct {
		ID string `json:"id"`
	}
	q := url.Values{"first": {"0"}, "max": {"1"}, "briefRepresentation": {"true"}}
	if err := c.getJSON(ctx, EndpointOrganizations, "organizations", q, &orgs); err != nil {
		if errors.Is(translate404(err, ErrOrganizationNotFound), ErrOrganizationsDisabled) {
			return false, nil
		}
		return false, fmt.Errorf("keycloak: organizations of the realm: %w", err)
	}
	if len(orgs) == 0 || orgs[0].ID == "" {
		return false, nil
	}
	var groups []json.RawMessage
	q = url.Values{"first": {"0"}, "max": {"1"}, "briefRepresentation": {"true"}}
	err := c.getJSON(ctx, EndpointOrganizationGroups, "organizations/"+url.PathEscape(orgs[0].ID)+"/groups", q, &groups)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(translateOrgGroups404(err), ErrOrganizationGroupsUnavailable):
		return false, nil
	}
	return false, fmt.Errorf("keycloak: groups of organization %s: %w", orgs[0].ID, err)
}
