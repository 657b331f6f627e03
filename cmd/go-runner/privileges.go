package main

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// auditPrivileges tells the operator, once at start, whether the service
// account holds more (or less) than the runner needs on this Keycloak:
// whoever reads KEYCLOAK_CLIENT_SECRET holds the same roles, and
// manage-realm lets them rewrite the realm. It runs in the background, so
// a Keycloak that is down at start delays nothing.
func auditPrivileges(k *keycloak.Client, watcher bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	roles, err := k.ServiceAccountRoles(ctx)
	if err != nil {
		slog.Info("keycloak service account privileges not checked", "error", err)
		return
	}
	// Keycloak shows its version to holders of manage-realm only, which is
	// exactly when it matters.
	version, err := k.ServerVersion(ctx)
	if err != nil {
		slog.Info("keycloak version unknown", "error", err)
	}
	p := keycloak.AuditPrivileges(roles, version, watcher)
	attrs := []any{"keycloak_version", p.Version, "roles", p.Roles, "needed", p.Needed}
	warned := false
	unneeded := p.Unneeded
	if slices.Contains(unneeded, keycloak.RoleManageRealm) && slices.Contains(p.Needed, keycloak.RoleViewOrganizations) {
		slog.Warn("keycloak service account holds manage-realm, which this Keycloak no longer needs for organization "+
			"reads: grant realm-management view-organizations and remove manage-realm (whoever reads "+
			"KEYCLOAK_CLIENT_SECRET can otherwise rewrite the realm)", attrs...)
		unneeded = slices.DeleteFunc(slices.Clone(unneeded), func(r string) bool { return r == keycloak.RoleManageRealm })
		warned = true
	}
	if len(unneeded) > 0 {
		slog.Warn("keycloak service account holds roles the runner never uses: remove them", append(attrs, "unneeded", unneeded)...)
		warned = true
	}
	if len(p.Missing) > 0 {
		slog.Warn("keycloak service account lacks roles the runner needs: those calls will fail", append(attrs, "missing", p.Missing)...)
		warned = true
	}
	if p.EmptyOrgReads {
		slog.Warn("keycloak service account holds query-organizations without view-organizations: Keycloak then "+
			"answers a user's organizations with an empty list; grant view-organizations", attrs...)
		warned = true
	}
	if !warned {
		slog.Info("keycloak service account privileges: the smallest set", attrs...)
	}
}
