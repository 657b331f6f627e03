package userinfo

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
)

// emitProfile is what a route config decides about emission. Configs with
// equal settings share one, so a login's memoized rendering survives APISIX
// preparing the same route again.
type emitProfile struct {
	headers   []claimHeader
	assertion *AssertionConf
}

// profiles interns emitProfiles by their settings.
type profiles struct {
	mu  sync.Mutex
	all map[string]*emitProfile
}

// maxProfiles bounds the interned settings; past it a config gets a profile
// of its own (its renderings are then not shared with equal configs).
const maxProfiles = 1024

func (p *profiles) intern(c *Conf) *emitProfile {
	prof := &emitProfile{headers: c.headers}
	if c.Assertion != nil {
		a := *c.Assertion
		prof.assertion = &a
	}
	key, err := json.Marshal(struct {
		H []string
		A *AssertionConf
	}{H: headerPairs(c.headers), A: prof.assertion})
	if err != nil {
		return prof
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if existing, ok := p.all[string(key)]; ok {
		return existing
	}
	if len(p.all) < maxProfiles {
		p.all[string(key)] = prof
	}
	return prof
}

func headerPairs(hs []claimHeader) []string {
	out := make([]string, 0, 2*len(hs))
	for _, h := range hs {
		out = append(out, h.header, h.claim)
	}
	return out
}

// noAssertionReuse is how long a rendering without an assertion is reused:
// it holds nothing that expires, only the login's claims.
const noAssertionReuse = time.Hour

// Emit writes X-Userinfo, the claim headers, X-User-Orgs-Source (when a later
// plugin refreshed the organizations) and the signed assertion for id. orgsync
// calls it again after replacing the organizations. What was written for the
// same login, settings and refresh is written again without being rendered
// or signed anew, until the assertion is half its ttl old.
func (c *Conf) Emit(r pkgHTTP.Request, id *identity.Identity) error {
	keys := c.plugin.deps.Keys
	now := time.Now()
	rendering := id.Memo.Load(id.Refresh)
	if !c.reusable(rendering, id, keys, now) {
		var err error
		if rendering, err = c.render(id, keys, now); err != nil {
			return err
		}
		id.Memo.Store(rendering)
	}
	write(r.Header(), rendering)
	return nil
}

// Replay writes the rendering kept for id, if it may be reused.
func (c *Conf) Replay(r pkgHTTP.Request, id *identity.Identity) bool {
	rendering := id.Memo.Load(id.Refresh)
	if !c.reusable(rendering, id, c.plugin.deps.Keys, time.Now()) {
		return false
	}
	write(r.Header(), rendering)
	return true
}

func (c *Conf) reusable(rendering *identity.Rendering, id *identity.Identity, keys *assertion.KeyRing, now time.Time) bool {
	return rendering != nil && rendering.Profile == c.profile && (c.profile.assertion == nil || rendering.Signer == keys) &&
		rendering.Refresh.Equal(id.Refresh) && now.Before(rendering.ReuseUntil)
}

func write(h pkgHTTP.Header, rendering *identity.Rendering) {
	for _, kv := range rendering.Headers {
		if kv[1] == "" {
			h.Del(kv[0])
		} else {
			h.Set(kv[0], kv[1])
		}
	}
}

var errNoSigningKey = errors.New("userinfo: no assertion signing key loaded")

func (c *Conf) render(id *identity.Identity, keys *assertion.KeyRing, now time.Time) (*identity.Rendering, error) {
	out := &identity.Rendering{Refresh: id.Refresh, Profile: c.profile, ReuseUntil: now.Add(noAssertionReuse)}
	claims := id.Claims
	if id.Orgs.Shape != identity.ShapeAbsent || len(id.Orgs.List) > 0 {
		claims = claims.Clone()
		claims[identity.ClaimOrganization] = id.Orgs.Encode(id.Orgs.Shape)
	}
	encoded, err := claims.Encode()
	if err != nil {
		return nil, err
	}
	out.Headers = append(out.Headers, [2]string{identity.HeaderUserinfo, encoded})
	for _, ch := range c.profile.headers {
		v, _ := claimValue(id, claims, ch.claim)
		out.Headers = append(out.Headers, [2]string{ch.header, identity.SanitizeValue(v)})
	}
	if id.OrgsSource != "" {
		out.Headers = append(out.Headers, [2]string{identity.HeaderOrgsSource, id.OrgsSource})
	}
	a := c.profile.assertion
	if a == nil {
		return out, nil
	}
	if keys == nil {
		return nil, errNoSigningKey
	}
	jws, fresh, reuseUntil, err := c.plugin.reuser.Sign(keys, assertionClaims(a, id, claims), a.TTL.Std())
	if err != nil {
		return nil, err
	}
	if fresh {
		metricAssertions.Inc()
	}
	out.Signer = keys
	out.ReuseUntil = reuseUntil
	out.Headers = append(out.Headers, [2]string{a.Header, jws})
	return out, nil
}

// assertionClaims are the claims an upstream may trust, each from the
// verified token or from Keycloak (orgsync). token_iss is the verified
// token's issuer: a sub names a user only within its realm, and the route's
// assertion.issuer (iss) is the same whichever realm the route trusts.
func assertionClaims(a *AssertionConf, id *identity.Identity, claims identity.Claims) *assertion.Claims {
	source := id.OrgsSource
	if source == "" {
		source = "token"
	}
	out := &assertion.Claims{Issuer: a.Issuer, Audience: a.Audience, Subject: id.Subject, TokenIssuer: id.Issuer,
		Organization: id.Orgs.Encode(identity.ShapeMapAttributes), OrganizationSource: source,
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
func claimValue(id *identity.Identity, claims identity.Claims, claim string) (string, bool) {
	switch claim {
	case identity.ClaimSubject:
		return id.Subject, true
	case identity.ClaimOrganization:
		return id.Orgs.HeaderValue(), true
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

// SignedRealm says what a good config signs, for `go-runner check`: the
// assertion's iss and aud, and the realm its subjects come from (the token
// issuer the route verifies, which becomes token_iss; "" when verify_token
// is false). ok is false when the route signs no assertion.
func (c *Conf) SignedRealm() (iss, aud, tokenIssuer string, ok bool) {
	if c == nil || c.err != nil || c.Assertion == nil {
		return "", "", "", false
	}
	if c.VerifyToken != nil && *c.VerifyToken {
		tokenIssuer = c.Issuer
	}
	return c.Assertion.Issuer, c.Assertion.Audience, tokenIssuer, true
}
