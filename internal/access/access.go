// Package access holds the per-route access rules of the runner: their JSON
// form (Rule, Tenant), their validation, the tenant read out of a request,
// and the decision on a user's current data (Facts). It knows nothing of
// Keycloak or of the cache: orgsync adapts its snapshot to Facts and calls
// Policy.Decide on every request.
package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Limits on a rule: a route's config is operator input, but it is parsed
// once and evaluated on every request, so its cost is bounded.
const (
	MaxDepth  = 8   // nesting of any/all
	MaxNodes  = 64  // rule objects in one require
	MaxString = 255 // bytes of an alias, role, group or client id
)

// Rule is one node of a route's "require": exactly one of its keys.
//
//	{"org": "acme"}                                  member of the organization acme (alias)
//	{"org_group": {"org": "acme", "group": "ops"}}   in group ops of the organization acme
//	{"tenant_group": "ops"}                          in group ops of the organization the request names
//	{"realm_role": "admin"}                          has the realm role admin
//	{"client_role": {"client": "billing", "role": "editor"}}
//	{"group": "/staff"}                              in the Keycloak group /staff (full path)
//	{"any": [rule, ...]}                             at least one holds
//	{"all": [rule, ...]}                             every one holds
type Rule struct {
	// Org: the user is a current member of the organization with this alias.
	Org string `json:"org,omitempty"`
	// OrgGroup: the user is in a group of an organization.
	OrgGroup *OrgGroup `json:"org_group,omitempty"`
	// TenantGroup: the user is in this group of the organization the request
	// names (needs the route's "tenant").
	TenantGroup string `json:"tenant_group,omitempty"`
	// RealmRole: the user has this realm role (effective, as Keycloak lists them).
	RealmRole string `json:"realm_role,omitempty"`
	// ClientRole: the user has this role of this client.
	ClientRole *ClientRole `json:"client_role,omitempty"`
	// Group: the user is in this Keycloak group, named by its full path ("/staff/ops").
	Group string `json:"group,omitempty"`
	// Any holds when at least one of its rules holds; 1 to 16 rules.
	Any []Rule `json:"any,omitempty"`
	// All holds when every one of its rules holds; 1 to 16 rules.
	All []Rule `json:"all,omitempty"`
}

// OrgGroup names a group within an organization.
type OrgGroup struct {
	// Org is the organization's alias.
	Org string `json:"org"`
	// Group is the group's path within the organization ("/engineering/
	// backend"), as a fresh login's organization claim and orgsync's
	// organization_groups show it.
	Group string `json:"group"`
}

// ClientRole names a role of a client.
type ClientRole struct {
	// Client is the client id (clientId, not the internal UUID).
	Client string `json:"client"`
	// Role is the role's name.
	Role string `json:"role"`
}

const maxList = 16

// groupPath checks a group named by its full path. The data holds paths
// ("/staff/ops"), compared exactly: a bare name would never match and
// refuse everyone.
func groupPath(path, group string) error {
	if group != "" && !strings.HasPrefix(group, "/") {
		return fmt.Errorf("%q: group %q: want the group's full path, such as \"/staff\"", path, group)
	}
	return name(path, group)
}

// Needs says which parts of Facts a policy reads, so that the plugin
// supplying them can refuse a route that does not fetch them.
type Needs struct {
	OrgGroups, RealmRoles, ClientRoles, Groups bool
}

// Org is one current membership.
type Org struct {
	Alias string
	ID    string
	// Groups are the organization's groups the user is in; nil when not fetched.
	Groups []string
}

// Facts is what a decision is made on: the user's current data, as the
// upstream receives it. A part the route does not fetch is empty, and a rule
// on it does not hold (Validate refuses such a route anyway).
type Facts struct {
	Orgs        []Org
	RealmRoles  []string
	ClientRoles map[string][]string
	Groups      []string
}

func (f *Facts) org(alias string) *Org {
	for i := range f.Orgs {
		if f.Orgs[i].Alias == alias {
			return &f.Orgs[i]
		}
	}
	return nil
}

// Validate checks a rule tree: one key per node, lists of 1 to 16, depth
// and size bounded, every name non-empty and printable. path names the node
// in errors ("require", "require.any[1]"). tenant says whether the route
// names a tenant (tenant_group needs one).
func (r *Rule) Validate(path string, tenant bool) error {
	nodes := 0
	return r.validate(path, tenant, 1, &nodes)
}

func (r *Rule) validate(path string, tenant bool, depth int, nodes *int) error {
	*nodes++
	if *nodes > MaxNodes {
		return fmt.Errorf("%q: more than %d rules", path, MaxNodes)
	}
	if depth > MaxDepth {
		return fmt.Errorf("%q: nested deeper than %d", path, MaxDepth)
	}
	set := r.keys()
	if len(set) != 1 {
		if len(set) == 0 {
			return fmt.Errorf(`%q: empty rule: want exactly one of "org", "org_group", "tenant_group", "realm_role", "client_role", "group", "any", "all"`, path)
		}
		return fmt.Errorf("%q: one rule per object, got %s: combine them with \"all\" or \"any\"", path, strings.Join(set, ", "))
	}
	switch {
	case r.Org != "":
		return name(path+".org", r.Org)
	case r.OrgGroup != nil:
		if err := name(path+".org_group.org", r.OrgGroup.Org); err != nil {
			return err
		}
		return groupPath(path+".org_group.group", r.OrgGroup.Group)
	case r.TenantGroup != "":
		if !tenant {
			return fmt.Errorf(`%q: "tenant_group" needs the route's "tenant" (where the request names its organization)`, path)
		}
		return groupPath(path+".tenant_group", r.TenantGroup)
	case r.RealmRole != "":
		return name(path+".realm_role", r.RealmRole)
	case r.ClientRole != nil:
		if err := name(path+".client_role.client", r.ClientRole.Client); err != nil {
			return err
		}
		return name(path+".client_role.role", r.ClientRole.Role)
	case r.Group != "":
		return groupPath(path+".group", r.Group)
	}
	list, key := r.Any, "any"
	if r.All != nil {
		list, key = r.All, "all"
	}
	if len(list) == 0 {
		return fmt.Errorf("%q: empty list: want 1 to %d rules", path+"."+key, maxList)
	}
	if len(list) > maxList {
		return fmt.Errorf("%q: %d rules: want at most %d", path+"."+key, len(list), maxList)
	}
	for i := range list {
		if err := list[i].validate(fmt.Sprintf("%s.%s[%d]", path, key, i), tenant, depth+1, nodes); err != nil {
			return err
		}
	}
	return nil
}

// keys lists the rule's keys that are set. An "any" or "all" given as []
// counts as set, so that Validate can say it is empty.
func (r *Rule) keys() []string {
	var set []string
	add := func(ok bool, k string) {
		if ok {
			set = append(set, k)
		}
	}
	add(r.Org != "", "org")
	add(r.OrgGroup != nil, "org_group")
	add(r.TenantGroup != "", "tenant_group")
	add(r.RealmRole != "", "realm_role")
	add(r.ClientRole != nil, "client_role")
	add(r.Group != "", "group")
	add(r.Any != nil, "any")
	add(r.All != nil, "all")
	return set
}

// name checks a name a rule compares with: not empty, at most MaxString
// bytes, valid UTF-8 without control characters.
func name(key, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%q is empty", key)
	case len(v) > MaxString:
		return fmt.Errorf("%q: %d bytes: want at most %d", key, len(v), MaxString)
	case !printable(v):
		return fmt.Errorf("%q %q: control characters or invalid UTF-8", key, v)
	}
	return nil
}

func printable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == 0xfffd {
			return false
		}
	}
	return true
}

// Needs says which parts of Facts the rule reads.
func (r *Rule) Needs() Needs {
	var n Needs
	r.needs(&n)
	return n
}

func (r *Rule) needs(n *Needs) {
	switch {
	case r.OrgGroup != nil, r.TenantGroup != "":
		n.OrgGroups = true
	case r.RealmRole != "":
		n.RealmRoles = true
	case r.ClientRole != nil:
		n.ClientRoles = true
	case r.Group != "":
		n.Groups = true
	}
	for i := range r.Any {
		r.Any[i].needs(n)
	}
	for i := range r.All {
		r.All[i].needs(n)
	}
}

// Holds evaluates the rule on f; tenant is the organization the request
// named (its alias), "" when the route names none.
func (r *Rule) Holds(f *Facts, tenant string) bool {
	switch {
	case r.Org != "":
		return f.org(r.Org) != nil
	case r.OrgGroup != nil:
		o := f.org(r.OrgGroup.Org)
		return o != nil && slices.Contains(o.Groups, r.OrgGroup.Group)
	case r.TenantGroup != "":
		if tenant == "" {
			return false
		}
		o := f.org(tenant)
		return o != nil && slices.Contains(o.Groups, r.TenantGroup)
	case r.RealmRole != "":
		return slices.Contains(f.RealmRoles, r.RealmRole)
	case r.ClientRole != nil:
		return slices.Contains(f.ClientRoles[r.ClientRole.Client], r.ClientRole.Role)
	case r.Group != "":
		return slices.Contains(f.Groups, r.Group)
	case len(r.Any) > 0:
		for i := range r.Any {
			if r.Any[i].Holds(f, tenant) {
				return true
			}
		}
		return false
	case len(r.All) > 0:
		for i := range r.All {
			if !r.All[i].Holds(f, tenant) {
				return false
			}
		}
		return true
	}
	// An empty rule never reaches here (Validate); if it did, it grants nothing.
	return false
}

// String is the rule as compact JSON, for debug logs.
func (r *Rule) String() string {
	b, err := json.Marshal(r)
	if err != nil {
		return "?"
	}
	return string(b)
}

// Reasons a policy refuses a request; the body says only this.
const (
	ReasonRuleNotMet      = "access_rule_not_met"
	ReasonTenantNotMember = "tenant_not_member"
	ReasonTenantMissing   = "tenant_missing"
	ReasonTenantAmbiguous = "tenant_ambiguous"
)

// Policy is a route's access rules, validated: its require and its tenant.
type Policy struct {
	Require *Rule
	Tenant  *Tenant
}

// NewPolicy validates require and tenant (either may be nil, not both) and
// returns the policy. Errors name the key at fault.
func NewPolicy(require *Rule, tenant *Tenant) (*Policy, error) {
	if require == nil && tenant == nil {
		return nil, errors.New("access: no rule")
	}
	if tenant != nil {
		if err := tenant.compile(); err != nil {
			return nil, err
		}
	}
	if require != nil {
		if err := require.Validate("require", tenant != nil); err != nil {
			return nil, err
		}
	}
	return &Policy{Require: require, Tenant: tenant}, nil
}

// Needs says which parts of Facts the policy reads.
func (p *Policy) Needs() Needs {
	if p.Require == nil {
		return Needs{}
	}
	return p.Require.Needs()
}

// Decide returns "" when f satisfies the policy for a request that named
// tenant (already read with Tenant.Read; "" when the route names none), else
// the reason to refuse with (403). With a tenant, membership in that
// organization comes first: it is required whatever require says.
func (p *Policy) Decide(f *Facts, tenant string) string {
	if p.Tenant != nil {
		if !p.Tenant.member(f, tenant) {
			return ReasonTenantNotMember
		}
		if p.Tenant.By == TenantByID {
			// Rules name organizations by alias: give them the alias of the
			// organization the id names.
			tenant = f.aliasOf(tenant)
		}
	}
	if p.Require != nil && !p.Require.Holds(f, tenant) {
		return ReasonRuleNotMet
	}
	return ""
}

func (f *Facts) aliasOf(id string) string {
	for _, o := range f.Orgs {
		if o.ID == id {
			return o.Alias
		}
	}
	return ""
}
