package emit

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
)

var errNoRoute = errors.New("emit: no route settings")

// render builds the headers of id under route, signing the assertion (or
// taking a signed one the reuser still holds for the same claims).
func (e *Emitter) render(id identity.Identity, route *Route, ref Refresh) (*rendering, error) {
	if route == nil {
		return nil, errNoRoute
	}
	now := e.nowFor(ref)
	out := &rendering{source: ref.Source, value: ref.Value, reuseUntil: now.Add(noAssertionReuse)}
	claims := id.Claims()
	orgs := id.Orgs()
	if orgs.Shape != identity.ShapeAbsent || len(orgs.List) > 0 {
		claims[identity.ClaimOrganization] = orgs.Encode(orgs.Shape)
	}
	encoded, err := claims.Encode()
	if err != nil {
		return nil, err
	}
	out.headers = append(out.headers, [2]string{identity.HeaderUserinfo, encoded})
	for _, ch := range route.headers {
		v, _ := claimValue(id.Subject(), orgs, claims, ch.Claim)
		out.headers = append(out.headers, [2]string{ch.Header, identity.SanitizeValue(v)})
	}
	if ref.Source != "" {
		out.headers = append(out.headers, [2]string{identity.HeaderOrgsSource, ref.Source})
	}
	a := route.assertion
	if a == nil {
		return out, nil
	}
	if e.keys == nil {
		return nil, ErrNoSigningKey
	}
	jws, fresh, reuseUntil, err := e.reuser.Sign(e.keys, assertionClaims(a, id, orgs, claims, ref.Source), a.TTL)
	if err != nil {
		return nil, err
	}
	if fresh {
		e.signed.Add(1)
		metricAssertions.Inc()
	}
	out.reuseUntil = reuseUntil
	out.headers = append(out.headers, [2]string{a.Header, jws})
	return out, nil
}

// assertionClaims are the claims an upstream may trust, each from the
// verified token or from Keycloak (orgsync). token_iss is the verified
// token's issuer: a sub names a user only within its realm, and the route's
// assertion.issuer (iss) is the same whichever realm the route trusts.
func assertionClaims(a *Assertion, id identity.Identity, orgs identity.Organizations, claims identity.Claims,
	source string) *assertion.Claims {
	if source == "" {
		source = "token"
	}
	out := &assertion.Claims{Issuer: a.Issuer, Audience: a.Audience, Subject: id.Subject(), TokenIssuer: id.Issuer(),
		Organization: orgs.Encode(identity.ShapeMapAttributes), OrganizationSource: source,
		Profile: map[string]json.RawMessage{}}
	for _, name := range []string{identity.ClaimEmail, identity.ClaimName, identity.ClaimPreferredUsername,
		identity.ClaimGroups, identity.ClaimResourceAccess} {
		if v, ok := claims[name]; ok {
			out.Profile[name] = v
		}
	}
	if v, ok := emailVerified(claims); ok {
		out.Profile[claimEmailVerified] = v
	}
	if roles := realmRoles(claims); roles != nil {
		out.Profile[identity.ClaimRoles] = roles
	}
	return out
}

// claimEmailVerified is Keycloak's flag that the user proved the address.
const claimEmailVerified = "email_verified"

// emailVerified is the token's email_verified when it is a JSON boolean.
// Anything else is left out, which verifiers read as false: an app must
// never take an address as proven on a value it cannot read.
func emailVerified(claims identity.Claims) (json.RawMessage, bool) {
	var b bool
	raw, ok := claims[claimEmailVerified]
	if !ok || json.Unmarshal(raw, &b) != nil {
		return nil, false
	}
	if b {
		return json.RawMessage("true"), true
	}
	return json.RawMessage("false"), true
}

// realmRoles reads Keycloak's realm_access.roles (where orgsync writes them
// too), nil when absent.
func realmRoles(claims identity.Claims) json.RawMessage {
	raw, ok := claims["realm_access"]
	if !ok {
		return nil
	}
	var access struct {
		Roles json.RawMessage `json:"roles"`
	}
	if json.Unmarshal(raw, &access) != nil || len(access.Roles) == 0 || string(access.Roles) == "null" {
		return nil
	}
	return access.Roles
}

// claimValue renders a claim for a plain header.
func claimValue(subject string, orgs identity.Organizations, claims identity.Claims, claim string) (string, bool) {
	switch claim {
	case identity.ClaimSubject:
		return subject, true
	case identity.ClaimOrganization:
		return orgs.HeaderValue(), true
	}
	raw, ok := claims[claim]
	if !ok {
		return "", false
	}
	var v any
	if json.Unmarshal(raw, &v) != nil || v == nil {
		return "", false
	}
	switch t := v.(type) {
	case string:
		return t, true
	case bool:
		return strconv.FormatBool(t), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				parts = append(parts, s)
			} else {
				b, _ := json.Marshal(e)
				parts = append(parts, string(b))
			}
		}
		return strings.Join(parts, ","), true
	}
	return string(raw), true
}
