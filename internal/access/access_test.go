package access

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func rule(t *testing.T, s string) *Rule {
	t.Helper()
	var r Rule
	require.NoError(t, json.Unmarshal([]byte(s), &r))
	return &r
}

var alice = Facts{
	Orgs: []Org{
		{Alias: "acme", ID: "11111111-1111-1111-1111-111111111111", Groups: []string{"/ops"}},
		{Alias: "globex", ID: "22222222-2222-2222-2222-222222222222"},
	},
	RealmRoles:  []string{"staff"},
	ClientRoles: map[string][]string{"billing": {"editor"}},
	Groups:      []string{"/eng/backend"},
}

func TestRuleHolds(t *testing.T) {
	cases := []struct {
		rule   string
		tenant string
		want   bool
	}{
		{`{"org":"acme"}`, "", true},
		{`{"org":"initech"}`, "", false},
		{`{"org":"ACME"}`, "", false}, // aliases compare exactly
		{`{"any":[{"org":"initech"},{"org":"globex"}]}`, "", true},
		{`{"all":[{"org":"acme"},{"org":"globex"}]}`, "", true},
		{`{"all":[{"org":"acme"},{"org":"initech"}]}`, "", false},
		{`{"org_group":{"org":"acme","group":"/ops"}}`, "", true},
		{`{"org_group":{"org":"globex","group":"/ops"}}`, "", false}, // the group of another organization
		{`{"tenant_group":"/ops"}`, "acme", true},
		{`{"tenant_group":"/ops"}`, "globex", false},
		{`{"tenant_group":"/ops"}`, "", false},
		{`{"realm_role":"staff"}`, "", true},
		{`{"realm_role":"admin"}`, "", false},
		{`{"client_role":{"client":"billing","role":"editor"}}`, "", true},
		{`{"client_role":{"client":"shop","role":"editor"}}`, "", false}, // a role of another client
		{`{"client_role":{"client":"billing","role":"admin"}}`, "", false},
		{`{"group":"/eng/backend"}`, "", true},
		{`{"group":"/eng"}`, "", false}, // a parent group is not membership
		{`{"all":[{"any":[{"realm_role":"admin"},{"group":"/eng/backend"}]},{"org":"acme"}]}`, "", true},
		{`{"all":[{"any":[{"realm_role":"admin"},{"group":"/ops"}]},{"org":"acme"}]}`, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.rule+"/"+tc.tenant, func(t *testing.T) {
			r := rule(t, tc.rule)
			require.NoError(t, r.Validate("require", true))
			assert.Equal(t, tc.want, r.Holds(&alice, tc.tenant))
		})
	}
}

func TestRuleOnEmptyFactsGrantsNothing(t *testing.T) {
	for _, s := range []string{`{"org":"acme"}`, `{"realm_role":"staff"}`, `{"group":"/eng/backend"}`,
		`{"client_role":{"client":"billing","role":"editor"}}`, `{"org_group":{"org":"acme","group":"/ops"}}`,
		`{"any":[{"org":"acme"}]}`, `{"tenant_group":"/ops"}`} {
		assert.False(t, rule(t, s).Holds(&Facts{}, "acme"), s)
	}
}

func TestRuleValidate(t *testing.T) {
	deep := `{"org":"acme"}`
	for i := 0; i < MaxDepth; i++ {
		deep = `{"any":[` + deep + `]}`
	}
	cases := map[string]string{
		`{}`:                              "empty rule",
		`{"org":""}`:                      "empty rule",
		`{"any":[]}`:                      "empty list",
		`{"org":"acme","realm_role":"x"}`: "one rule per object",
		`{"org_group":{"org":"acme"}}`:    `"require.org_group.group" is empty`,
		`{"client_role":{"role":"x"}}`:    `"require.client_role.client" is empty`,
		`{"group":"staff"}`:               "full path",
		`{"tenant_group":"/ops"}`:         `needs the route's "tenant"`,
		`{"realm_role":"a\u0000b"}`:       "control characters",
		`{"all":[{"org":"a"},{}]}`:        `"require.all[1]": empty rule`,
		deep:                              "nested deeper",
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			err := rule(t, in).Validate("require", false)
			require.Error(t, err)
			assert.Contains(t, err.Error(), want)
		})
	}
	many := Rule{}
	for i := 0; i < 5; i++ {
		inner := Rule{}
		for j := 0; j < 14; j++ {
			inner.Any = append(inner.Any, Rule{Org: "a"})
		}
		many.All = append(many.All, inner)
	}
	err := many.Validate("require", false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than")
}

func TestNeeds(t *testing.T) {
	n := rule(t, `{"all":[{"org":"a"},{"any":[{"realm_role":"r"},{"client_role":{"client":"c","role":"r"}}]}]}`).Needs()
	assert.Equal(t, Needs{RealmRoles: true, ClientRoles: true}, n)
	assert.Equal(t, Needs{OrgGroups: true}, rule(t, `{"tenant_group":"/g"}`).Needs())
	assert.Equal(t, Needs{Groups: true}, rule(t, `{"group":"/g"}`).Needs())
}

func TestPolicyDecide(t *testing.T) {
	p, err := NewPolicy(rule(t, `{"tenant_group":"/ops"}`), &Tenant{Header: "X-Tenant"})
	require.NoError(t, err)
	assert.Equal(t, "", p.Decide(&alice, "acme"))
	assert.Equal(t, ReasonRuleNotMet, p.Decide(&alice, "globex"))
	assert.Equal(t, ReasonTenantNotMember, p.Decide(&alice, "initech"))
	assert.Equal(t, ReasonTenantNotMember, p.Decide(&alice, ""))

	// A tenant alone still requires membership.
	p, err = NewPolicy(nil, &Tenant{Path: "/orgs/{org}"})
	require.NoError(t, err)
	assert.Equal(t, "", p.Decide(&alice, "globex"))
	assert.Equal(t, ReasonTenantNotMember, p.Decide(&alice, "initech"))

	// By id: the id is matched, never the alias, and rules see the alias.
	p, err = NewPolicy(rule(t, `{"tenant_group":"/ops"}`), &Tenant{Header: "X-Tenant", By: "id"})
	require.NoError(t, err)
	assert.Equal(t, "", p.Decide(&alice, "11111111-1111-1111-1111-111111111111"))
	assert.Equal(t, ReasonTenantNotMember, p.Decide(&alice, "acme"))

	p, err = NewPolicy(rule(t, `{"org":"acme"}`), nil)
	require.NoError(t, err)
	assert.Equal(t, "", p.Decide(&alice, ""))
	assert.Equal(t, ReasonRuleNotMet, p.Decide(&Facts{}, ""))
}

func TestTenantConfig(t *testing.T) {
	bad := []Tenant{
		{},
		{Path: "/orgs/{org}", Host: "{org}.example.org"},
		{Path: "orgs/{org}"},
		{Path: "/orgs/{org}/x"},
		{Path: "/orgs/{org}x"},
		{Path: "/o%72gs/{org}"},
		{Path: "/orgs//{org}"},
		{Host: "{org}"},
		{Host: "{org}.Example.org"},
		{Host: "{org}.example.org."},
		{Host: "x.{org}.example.org"},
		{Header: "X Tenant"},
		{Header: "X-Tenant", By: "name"},
	}
	for _, tc := range bad {
		assert.Error(t, tc.compile(), "%+v", tc)
	}
	for _, tc := range []Tenant{{Path: "/{org}"}, {Path: "/api/v1/orgs/{org}"}, {Host: "{org}.apps.example.org"}, {Header: "X_Tenant", By: "id"}} {
		assert.NoError(t, tc.compile(), "%+v", tc)
	}
}
