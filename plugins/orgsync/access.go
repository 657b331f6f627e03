package orgsync

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/access"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
)

// ReasonIdentityRequired: a route with an access rule got a request no
// verified identity came with.
const ReasonIdentityRequired = "identity_required"

// Gates reports whether the route has an access rule (require or tenant).
func (c *Conf) Gates() bool { return c.err == nil && c.policy != nil }

// facts is the snapshot as access rules read it: the same data the upstream
// receives. A part this route does not fetch stays empty (fetches refuses a
// rule on it).
func (s *snapshot) facts() access.Facts {
	f := access.Facts{Orgs: make([]access.Org, len(s.Orgs)), RealmRoles: s.Roles, ClientRoles: s.ClientRoles, Groups: s.Groups}
	for i, o := range s.Orgs {
		f.Orgs[i] = access.Org{Alias: o.Alias, ID: o.ID, Groups: o.Groups}
	}
	return f
}

// fetches refuses a rule on data the route's claims do not fetch: it would
// be decided on nothing and refuse everyone, or, were the data taken from the
// login, on claims frozen at login.
func (c *Conf) fetches(n access.Needs) error {
	switch {
	case n.RealmRoles && !c.roles:
		return errors.New(`"require" reads realm roles: add "roles" to "claims"`)
	case n.Groups && !c.groups:
		return errors.New(`"require" reads groups: add "groups" to "claims"`)
	case n.OrgGroups && !c.orgGroups:
		return errors.New(`"require" reads organization groups: add "organization_groups" to "claims"`)
	case n.ClientRoles && !c.clientRoles:
		return errors.New(`"require" reads client roles: add "client_roles" to "claims"`)
	}
	return nil
}

// allow decides the route's access rules on snap, the user's current data
// (nil when there is none: Keycloak failed and nothing is cached), and
// answers the refusal itself. A stale snapshot is decided on: it is what
// the upstream receives, marked stale (on_keycloak_error "deny" refused it
// before). With no snapshot nothing is decided on the login's claims: 503.
func (c *Conf) allow(w http.ResponseWriter, r pkgHTTP.Request, user string, snap *snapshot) bool {
	if snap == nil {
		c.refuseAccess(w, r, user, http.StatusServiceUnavailable, ReasonKeycloakError)
		return false
	}
	var tenant string
	if t := c.policy.Tenant; t != nil {
		var reason string
		if tenant, reason = t.Read(tenantRequest(r)); reason != "" {
			c.refuseAccess(w, r, user, http.StatusBadRequest, reason)
			return false
		}
	}
	facts := snap.facts()
	if reason := c.policy.Decide(&facts, tenant); reason != "" {
		c.refuseAccess(w, r, user, http.StatusForbidden, reason, "tenant", tenant)
		return false
	}
	return true
}

// refuseAccess answers {"error","reason"} and nothing else (no rule, no
// membership), counts the refusal by route and reason, and logs the rule
// and the user (its id, "" for nobody) at debug.
func (c *Conf) refuseAccess(w http.ResponseWriter, r pkgHTTP.Request, user string, status int, reason string, args ...any) {
	route := routeLabel(r)
	metricAccessRefusals.WithLabelValues(route, reason).Inc()
	if status == http.StatusServiceUnavailable {
		metricKeycloakErrors.Inc()
		countDenied.Inc()
	} else {
		countForbidden.Inc()
	}
	if log := logger(); log.Enabled(r.Context(), slog.LevelDebug) {
		rule := ""
		if c.policy.Require != nil {
			rule = c.policy.Require.String()
		}
		log.Debug("access refused", append([]any{"route", route, "user", user, "reason", reason, "rule", rule}, args...)...)
	}
	identity.Refuse(w, status, reason)
}

// tenantRequest is the request as the tenant is read from it. The raw
// request-target costs a round trip to APISIX, asked only by a path tenant.
func tenantRequest(r pkgHTTP.Request) access.Request {
	h := r.Header()
	return access.Request{
		Path: string(r.Path()),
		RawURI: func() (string, error) {
			v, err := r.Var("real_request_uri")
			return string(v), err
		},
		Host: h.Get("Host"),
		Header: func(name string) (string, int) {
			var value string
			n := 0
			for k, vs := range h.View() {
				if identity.NormalizeName(k) == name {
					n += len(vs)
					if len(vs) > 0 {
						value = vs[0]
					}
				}
			}
			return value, n
		},
	}
}

// Route labels: the APISIX route id, asked from APISIX on a refusal only (a
// round trip an allowed request never pays). The conf token is no label: it
// changes whenever APISIX resends the route. Route ids are the operator's,
// bounded by the routes configured; past maxRouteLabels distinct ones the
// rest count as "other", so a flood of route changes cannot grow the series
// without bound.
const maxRouteLabels = 256

var routeLabels = struct {
	sync.Mutex
	seen map[string]bool
}{seen: map[string]bool{}}

func routeLabel(r pkgHTTP.Request) string {
	v, err := r.Var("route_id")
	if err != nil || len(v) == 0 {
		return "unknown"
	}
	if len(v) > 64 {
		return "invalid"
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "invalid"
		}
	}
	id := string(v)
	routeLabels.Lock()
	defer routeLabels.Unlock()
	if !routeLabels.seen[id] {
		if len(routeLabels.seen) >= maxRouteLabels {
			return "other"
		}
		routeLabels.seen[id] = true
	}
	return id
}
