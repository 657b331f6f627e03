package kctest

import (
	"encoding/base64"
	"encoding/json"
	"sort"
	"strings"
	"testing"
)

// orgClaim returns the aliases in the userinfo's organization claim and the ids
// (the realm's mapper adds the organization id and attributes).
func orgClaim(t *testing.T, s *Session) (aliases []string, ids map[string]string) {
	t.Helper()
	ids = map[string]string{}
	raw, ok := s.UserinfoMap(t)["organization"]
	if !ok {
		return nil, ids
	}
	m, ok := raw.(map[string]any)
	if !ok {
		t.Fatalf("organization claim %v is not the map form", raw)
	}
	for alias, v := range m {
		aliases = append(aliases, alias)
		ids[alias], _ = v.(map[string]any)["id"].(string)
	}
	sort.Strings(aliases)
	return aliases, ids
}

func TestLoginUserinfoCarriesOrganizations(t *testing.T) {
	bob := Login(t, "bob", "bob-password")
	aliases, ids := orgClaim(t, bob)
	if strings.Join(aliases, ",") != "acme,globex" {
		t.Fatalf("bob's organization claim = %v", aliases)
	}
	if ids["acme"] != OrgIDByAlias(t, "acme") {
		t.Fatalf("acme id in claim %q, admin API says %q", ids["acme"], OrgIDByAlias(t, "acme"))
	}
	if bob.Subject(t) != UserIDByUsername(t, "bob") || strings.Count(bob.AccessToken, ".") != 2 {
		t.Fatal("sub or access token wrong")
	}
	dec, err := base64.StdEncoding.DecodeString(bob.UserinfoHeader())
	if err != nil || !json.Valid(dec) {
		t.Fatalf("X-Userinfo value does not decode: %v", err)
	}
	var attrs map[string]any
	_ = json.Unmarshal(dec, &attrs)
	tier := attrs["organization"].(map[string]any)["acme"].(map[string]any)["tier"]
	if tier.([]any)[0] != "gold" {
		t.Fatalf("acme tier attribute = %v", tier)
	}

	if aliases, _ := orgClaim(t, Login(t, "carol", "carol-password")); len(aliases) != 0 {
		t.Fatalf("carol has organizations %v", aliases)
	}
}

// TestUserinfoIsFrozenUntilLogin shows the problem the runner solves: Keycloak
// changes at once, the userinfo a session holds does not.
func TestUserinfoIsFrozenUntilLogin(t *testing.T) {
	u := CreateUser(t, "kctest")
	s := Login(t, u.Username, u.Password)
	if aliases, _ := orgClaim(t, s); len(aliases) != 0 {
		t.Fatalf("new user has organizations %v", aliases)
	}
	AddMember(t, "globex", u.ID)
	s.Refresh(t) // the session's userinfo stays as it was
	if aliases, _ := orgClaim(t, s); len(aliases) != 0 {
		t.Fatalf("held userinfo changed: %v", aliases)
	}
	if aliases, _ := orgClaim(t, Login(t, u.Username, u.Password)); strings.Join(aliases, ",") != "globex" {
		t.Fatalf("after a new login: %v", aliases)
	}
	RemoveMember(t, "globex", u.ID)
	DisableUser(t, u.ID)
	EnableUser(t, u.ID)
	if aliases, _ := orgClaim(t, Login(t, u.Username, u.Password)); len(aliases) != 0 {
		t.Fatalf("after removal and a new login: %v", aliases)
	}
}

func TestServiceAccountToken(t *testing.T) {
	if tok := ServiceAccountToken(t); strings.Count(tok, ".") != 2 {
		t.Fatal("no service-account token")
	}
}
