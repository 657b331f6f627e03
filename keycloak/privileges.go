package keycloak

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Client roles of realm-management the runner's service account may hold.
const (
	RoleManageRealm        = "manage-realm"        // organization reads on 26.0-26.6, and far more
	RoleViewOrganizations  = "view-organizations"  // organization reads on 26.7+ (includes query-organizations)
	RoleQueryOrganizations = "query-organizations" // 26.7+: lists organizations, but a user's come back EMPTY
	RoleViewUsers          = "view-users"          // users, groups, role mappings (includes query-users, query-groups)
	RoleViewEvents         = "view-events"         // the admin-event watcher
	RoleViewClients        = "view-clients"        // orgsync's client_roles: lists clients, reads users' client roles
)

// roleOptional are roles a route setting needs (orgsync's "client_roles"),
// which the audit at start cannot see: held, they are not reported unneeded.
var roleOptional = []string{RoleViewClients, "query-clients"}

// roleImplied are roles Keycloak adds to a token as parts of the composites
// the runner needs; holding them is not a grant of its own.
var roleImplied = []string{"query-users", "query-groups", RoleQueryOrganizations}

// ServiceAccountRoles returns the realm-management roles of the service
// account's access token (resource_access["realm-management"].roles).
//
// The token is read without checking its signature: it came straight from
// the token endpoint of KEYCLOAK_URL, and it is read only to advise the
// operator at start, never to decide who gets in.
func (c *Client) ServiceAccountRoles(ctx context.Context) ([]string, error) {
	tok, err := c.Token(ctx)
	if err != nil {
		return nil, err
	}
	return tokenRoles(tok)
}

func tokenRoles(tok string) ([]string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("keycloak: service-account token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("keycloak: service-account token payload: %w", err)
	}
	var claims struct {
		ResourceAccess map[string]struct {
			Roles []string `json:"roles"`
		} `json:"resource_access"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, fmt.Errorf("keycloak: service-account token payload: %w", err)
	}
	roles := claims.ResourceAccess["realm-management"].Roles
	if roles == nil {
		roles = []string{}
	}
	return roles, nil
}

// ServerVersion returns Keycloak's version from /admin/serverinfo, or ""
// when Keycloak does not show it to this account (it shows it to holders of
// manage-realm, not to an account with view-organizations only).
func (c *Client) ServerVersion(ctx context.Context) (string, error) {
	resp, err := c.send(ctx, call{endpoint: EndpointServerInfo, method: http.MethodGet, path: "serverinfo", server: true})
	if err != nil {
		return "", fmt.Errorf("keycloak: server info: %w", err)
	}
	if resp.status == http.StatusForbidden {
		return "", nil
	}
	if resp.status != http.StatusOK {
		return "", fmt.Errorf("keycloak: server info: %w", statusError(EndpointServerInfo, resp))
	}
	var info struct {
		SystemInfo struct {
			Version string `json:"version"`
		} `json:"systemInfo"`
	}
	if err := json.Unmarshal(resp.body, &info); err != nil {
		return "", fmt.Errorf("keycloak: server info: %w", err)
	}
	return info.SystemInfo.Version, nil
}

// Privileges is what the runner's service account holds against what it
// needs on this Keycloak.
type Privileges struct {
	Version  string   // Keycloak's version; "" when unknown
	Roles    []string // realm-management roles the token carries
	Needed   []string // the smallest set for this version
	Missing  []string // needed and not held (nor covered by a bigger role): some calls will fail
	Unneeded []string // held and never used: whoever reads the secret has them too
	// EmptyOrgReads: query-organizations without view-organizations makes
	// Keycloak answer a user's organizations with an empty list, not 403.
	EmptyOrgReads bool
}

// AuditPrivileges compares roles with the smallest set the runner needs on
// Keycloak version (watcher: the admin-event watcher runs). An unknown
// version counts as 26.7+ when the token holds view-organizations (the role
// exists only there), as older otherwise.
func AuditPrivileges(roles []string, version string, watcher bool) Privileges {
	p := Privileges{Version: version, Roles: roles}
	orgRole := RoleManageRealm
	if atLeast(version, 26, 7) || (version == "" && slices.Contains(roles, RoleViewOrganizations)) {
		orgRole = RoleViewOrganizations
	}
	p.Needed = []string{orgRole, RoleViewUsers}
	if watcher {
		p.Needed = append(p.Needed, RoleViewEvents)
	}
	for _, r := range p.Needed {
		// manage-realm still reads organizations on 26.7+: too much, not missing.
		covered := r == RoleViewOrganizations && slices.Contains(roles, RoleManageRealm)
		if !slices.Contains(roles, r) && !covered {
			p.Missing = append(p.Missing, r)
		}
	}
	for _, r := range roles {
		if !slices.Contains(p.Needed, r) && !slices.Contains(roleImplied, r) && !slices.Contains(roleOptional, r) {
			p.Unneeded = append(p.Unneeded, r)
		}
	}
	p.EmptyOrgReads = slices.Contains(roles, RoleQueryOrganizations) &&
		!slices.Contains(roles, RoleViewOrganizations) && !slices.Contains(roles, RoleManageRealm)
	return p
}

// atLeast reports whether version ("26.7.3", "26.7.0-SNAPSHOT") is at least
// major.minor; false when it does not parse.
func atLeast(version string, major, minor int) bool {
	fields := strings.SplitN(version, ".", 3)
	if len(fields) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(fields[0])
	mi, err2 := strconv.Atoi(strings.SplitN(fields[1], "-", 2)[0])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
