package keycloak

import (
	"context"
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// realClient is a Client on the test Keycloak's service account (identity-runner,
// realm-management roles manage-realm, view-users, view-events only).
func realClient(t *testing.T) *Client {
	t.Helper()
	s := kctest.Env(t)
	c, err := New(&Options{URL: s.URL, Realm: s.Realm, ClientID: s.SAClientID, ClientSecret: s.SAClientSecret, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func aliases(orgs []Organization) []string {
	var a []string
	for _, o := range orgs {
		a = append(a, o.Alias)
	}
	sort.Strings(a)
	return a
}

func TestRealUserOrganizations(t *testing.T) {
	c := realClient(t)
	ctx := context.Background()
	bob := kctest.UserIDByUsername(t, "bob")
	orgs, err := c.UserOrganizations(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	if got := aliases(orgs); !slices.Equal(got, []string{"acme", "globex"}) {
		t.Fatalf("bob's organizations = %v", got)
	}
	for _, o := range orgs {
		if o.ID == "" || !o.Enabled || len(o.Domains) != 1 {
			t.Fatalf("organization %+v lacks id, enabled or domains", o)
		}
		if o.Alias == "acme" && (o.Name != "Acme Corporation" || !slices.Equal(o.Attributes["tier"], []string{"gold"})) {
			t.Fatalf("acme = %+v, want name and tier attribute", o)
		}
	}
	if id := kctest.OrgIDByAlias(t, "acme"); !slices.ContainsFunc(orgs, func(x Organization) bool { return x.ID == id }) {
		t.Fatalf("acme id %s not among %+v", id, orgs)
	}

	carol := kctest.UserIDByUsername(t, "carol")
	orgs, err = c.UserOrganizations(ctx, carol)
	if err != nil || orgs == nil || len(orgs) != 0 {
		t.Fatalf("carol's organizations = %#v, %v; want an empty list", orgs, err)
	}

	if _, err := c.UserOrganizations(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("unknown user: err = %v, want ErrUserNotFound", err)
	}
	if n := c.Requests(EndpointUserOrganizations); n != 3 {
		t.Fatalf("Requests(user_organizations) = %d, want 3", n)
	}
}

func TestRealMembershipChangeSeenAtOnce(t *testing.T) {
	c := realClient(t)
	ctx := context.Background()
	u := kctest.CreateUser(t, "orgs")
	kctest.AddMember(t, "initech", u.ID)
	orgs, err := c.UserOrganizations(ctx, u.ID)
	if err != nil || !slices.Equal(aliases(orgs), []string{"initech"}) {
		t.Fatalf("after add: %v, %v", aliases(orgs), err)
	}
	kctest.RemoveMember(t, "initech", u.ID)
	orgs, err = c.UserOrganizations(ctx, u.ID)
	if err != nil || len(orgs) != 0 {
		t.Fatalf("after remove: %v, %v", aliases(orgs), err)
	}
}

func TestRealUser(t *testing.T) {
	c := realClient(t)
	ctx := context.Background()
	id, err := c.UserIDByUsername(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if want := kctest.UserIDByUsername(t, "alice"); id != want {
		t.Fatalf("UserIDByUsername(alice) = %s, want %s", id, want)
	}
	if _, err := c.UserIDByUsername(ctx, "ali"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("prefix match: err = %v, want ErrUserNotFound (exact match only)", err)
	}
	u, err := c.User(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != id || u.Username != "alice" || u.Email != "alice@acme.example.com" || !u.Enabled {
		t.Fatalf("User = %+v", u)
	}
	if _, err := c.User(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("unknown user: err = %v", err)
	}

	tu := kctest.CreateUser(t, "disabled")
	kctest.DisableUser(t, tu.ID)
	if u, err := c.User(ctx, tu.ID); err != nil || u.Enabled {
		t.Fatalf("disabled user = %+v, %v", u, err)
	}
	kctest.DeleteUser(t, tu.ID)
	if _, err := c.User(ctx, tu.ID); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("deleted user: err = %v", err)
	}
}

func TestRealUserGroupsAndRoles(t *testing.T) {
	c := realClient(t)
	ctx := context.Background()
	id := kctest.UserIDByUsername(t, "alice")
	groups, err := c.UserGroups(ctx, id)
	if err != nil || !slices.Equal(groups, []string{"/staff/editors"}) {
		t.Fatalf("UserGroups = %v, %v; want [/staff/editors]", groups, err)
	}
	roles, err := c.UserRealmRoles(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(roles, "course-admin") || !slices.Contains(roles, "offline_access") || !slices.Contains(roles, "default-roles-olapps") {
		t.Fatalf("effective realm roles = %v, want the realm defaults", roles)
	}
	if groups, err := c.UserGroups(ctx, kctest.UserIDByUsername(t, "carol")); err != nil || groups == nil || len(groups) != 0 {
		t.Fatalf("carol's groups = %#v, %v; want an empty list", groups, err)
	}
	if _, err := c.UserGroups(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("unknown user groups: err = %v", err)
	}
}

func TestRealOrganizationMembers(t *testing.T) {
	c := realClient(t)
	ctx := context.Background()
	acme := kctest.OrgIDByAlias(t, "acme")
	ids, err := c.OrganizationMemberIDs(ctx, acme)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob"} {
		if !slices.Contains(ids, kctest.UserIDByUsername(t, name)) {
			t.Fatalf("%s missing from acme members %v", name, ids)
		}
	}
	if _, err := c.OrganizationMemberIDs(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, ErrOrganizationNotFound) {
		t.Fatalf("unknown organization: err = %v", err)
	}
}

func TestRealBadSecret(t *testing.T) {
	s := kctest.Env(t)
	c, err := New(&Options{URL: s.URL, Realm: s.Realm, ClientID: s.SAClientID, ClientSecret: "wrong", FailureThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.UserOrganizations(context.Background(), "x")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 401 || se.Endpoint != EndpointToken {
		t.Fatalf("err = %v, want token 401", err)
	}
	if !c.Healthy() {
		t.Fatal("a refused secret opened the breaker: Keycloak is up")
	}
}
