package verify

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// Identity is what a verified assertion says about the user.
type Identity struct {
	// Subject is Keycloak's user id (sub), unique within TokenIssuer only.
	Subject string
	// TokenIssuer is the iss of the access token the gateway verified: the
	// Keycloak realm URL the subject belongs to. "" when the route verified
	// no token (verify_token false).
	TokenIssuer string
	Email       string
	// EmailVerified is the token's email_verified: Keycloak checked that
	// the user controls Email. false when the assertion does not say.
	// An Email that is not verified may be anyone's: never let it name an
	// account.
	EmailVerified     bool
	Name              string
	PreferredUsername string
	// Organizations, sorted by alias: the current memberships when orgsync
	// runs on the route, else those of the login's token.
	Organizations []Organization
	// OrganizationSource says where Organizations came from: "token" (the
	// verified access token), or orgsync's "keycloak" (asked just now),
	// "cache" (fresh in the shared cache) or "stale" (Keycloak unreachable,
	// last known value). "" when the route does not say.
	OrganizationSource string
	Groups             []string
	Roles              []string
	// ID is the assertion's jti.
	ID       string
	IssuedAt time.Time
	Expiry   time.Time
	// Claims holds every claim of the payload, raw, for those this type does
	// not name.
	Claims map[string]json.RawMessage
}

// Organization is one membership.
type Organization struct {
	Alias string
	// ID is Keycloak's organization id; "" when the gateway only knew aliases.
	ID string
	// Attributes are the organization's attributes (Keycloak's
	// {"tier":["gold"]}); nil when there are none.
	Attributes map[string][]string
}

// Organization returns the membership with the given alias.
func (id Identity) Organization(alias string) (Organization, bool) {
	for _, o := range id.Organizations {
		if o.Alias == alias {
			return o, true
		}
	}
	return Organization{}, false
}

// Aliases lists the organization aliases, sorted.
func (id Identity) Aliases() []string {
	out := make([]string, len(id.Organizations))
	for i, o := range id.Organizations {
		out[i] = o.Alias
	}
	return out
}

func identityFrom(claims map[string]json.RawMessage, iat, exp time.Time) (Identity, error) {
	id := Identity{IssuedAt: iat, Expiry: exp, Claims: claims}
	var err error
	if id.Subject, err = stringClaim(claims, "sub"); err != nil {
		return Identity{}, err
	}
	if id.Subject == "" {
		return Identity{}, refuse(ReasonClaims, "empty sub")
	}
	for name, dst := range map[string]*string{
		"email": &id.Email, "name": &id.Name, "preferred_username": &id.PreferredUsername,
		"organization_source": &id.OrganizationSource, "jti": &id.ID, claimTokenIssuer: &id.TokenIssuer,
	} {
		if *dst, err = optionalString(claims, name); err != nil {
			return Identity{}, err
		}
	}
	if id.EmailVerified, err = optionalBool(claims, "email_verified"); err != nil {
		return Identity{}, err
	}
	if id.Groups, err = stringList(claims, "groups"); err != nil {
		return Identity{}, err
	}
	if id.Roles, err = stringList(claims, "roles"); err != nil {
		return Identity{}, err
	}
	if id.Organizations, err = parseOrganizations(claims["organization"]); err != nil {
		return Identity{}, refuse(ReasonClaims, "organization: %v", err)
	}
	return id, nil
}

// optionalString reads a claim that may be absent or null.
func optionalString(claims map[string]json.RawMessage, name string) (string, error) {
	raw, ok := claims[name]
	if !ok || isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", refuse(ReasonClaims, "%s must be a string", name)
	}
	return s, nil
}

// optionalBool reads a boolean claim that may be absent or null (false).
func optionalBool(claims map[string]json.RawMessage, name string) (bool, error) {
	raw, ok := claims[name]
	if !ok || isNull(raw) {
		return false, nil
	}
	var b bool
	if json.Unmarshal(raw, &b) != nil {
		return false, refuse(ReasonClaims, "%s must be a boolean", name)
	}
	return b, nil
}

// stringList reads a list of strings; Keycloak mappers with "multivalued"
// off write a single string, taken as a list of one.
func stringList(claims map[string]json.RawMessage, name string) ([]string, error) {
	raw, ok := claims[name]
	if !ok || isNull(raw) {
		return nil, nil
	}
	values, err := stringOrList(raw)
	if err != nil {
		return nil, refuse(ReasonClaims, "%s must be a string or a list of strings", name)
	}
	return values, nil
}

func stringOrList(raw json.RawMessage) ([]string, error) {
	var one string
	if !isNull(raw) && json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var items []json.RawMessage
	if isNull(raw) || json.Unmarshal(raw, &items) != nil {
		return nil, fmt.Errorf("not a string or a list")
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		var s string
		if isNull(it) || json.Unmarshal(it, &s) != nil {
			return nil, fmt.Errorf("not a list of strings")
		}
		out = append(out, s)
	}
	return out, nil
}

// parseOrganizations reads the organization claim in each shape Keycloak's
// organization mapper writes: {"alias":{"id":"..","attr":["v"]}} (what the
// runner signs), ["alias"], "alias", {} or absent.
func parseOrganizations(raw json.RawMessage) ([]Organization, error) {
	if raw == nil || isNull(raw) {
		return nil, nil
	}
	var single string
	if json.Unmarshal(raw, &single) == nil {
		if single == "" {
			return nil, nil
		}
		return []Organization{{Alias: single}}, nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		out := make([]Organization, 0, len(list))
		for _, it := range list {
			var alias string
			if isNull(it) || json.Unmarshal(it, &alias) != nil || alias == "" {
				return nil, fmt.Errorf("a list must hold aliases (non-empty strings)")
			}
			out = append(out, Organization{Alias: alias})
		}
		return sortedUnique(out)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("expected an object, a list or a string")
	}
	out := make([]Organization, 0, len(m))
	for alias, entryRaw := range m {
		if alias == "" {
			return nil, fmt.Errorf("empty alias")
		}
		var entry map[string]json.RawMessage
		if isNull(entryRaw) || json.Unmarshal(entryRaw, &entry) != nil {
			return nil, fmt.Errorf("%s must be an object", alias)
		}
		org := Organization{Alias: alias}
		for name, v := range entry {
			if name == "id" {
				if isNull(v) || json.Unmarshal(v, &org.ID) != nil {
					return nil, fmt.Errorf("%s.id must be a string", alias)
				}
				continue
			}
			values, err := stringOrList(v)
			if err != nil {
				return nil, fmt.Errorf("%s.%s must be a string or a list of strings", alias, name)
			}
			if org.Attributes == nil {
				org.Attributes = map[string][]string{}
			}
			org.Attributes[name] = values
		}
		out = append(out, org)
	}
	return sortedUnique(out)
}

func sortedUnique(orgs []Organization) ([]Organization, error) {
	sort.Slice(orgs, func(i, j int) bool { return orgs[i].Alias < orgs[j].Alias })
	for i := 1; i < len(orgs); i++ {
		if orgs[i].Alias == orgs[i-1].Alias {
			return nil, fmt.Errorf("alias %q twice", orgs[i].Alias)
		}
	}
	if len(orgs) == 0 {
		return nil, nil
	}
	return orgs, nil
}
