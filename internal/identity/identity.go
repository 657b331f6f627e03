package identity

import (
	"encoding/json"
	"maps"
)

// Login names one proven login for as long as the process keeps it: what an
// emitter keys its reuse by. 0 is no login to reuse (an identity proven for
// one request only).
type Login uint64

// Identity is a user proven on a request. It is a value: its fields are set
// by New and never change, so one proven login can be handed to any number
// of requests and plugins at once. A plugin that changes something (orgsync
// refreshing the organizations) gets a new value from a With method; the
// original stays as it was.
type Identity struct {
	login    Login
	subject  string
	issuer   string
	claims   Claims
	orgs     Organizations
	verified bool
}

// New builds the identity of claims, which it takes over (the caller must
// not change the map afterwards). issuer is the verified token's iss (""
// without one); verified says a signed access token proved the identity
// rather than X-Userinfo taken as sent. It fails when the organization claim
// is malformed.
func New(login Login, claims Claims, issuer string, verified bool) (Identity, error) {
	orgs, err := claims.Organizations()
	if err != nil {
		return Identity{}, err
	}
	return Identity{login: login, subject: claims.Subject(), issuer: issuer, claims: claims, orgs: orgs,
		verified: verified}, nil
}

// Login is the login this identity was proven on.
func (id Identity) Login() Login { return id.login }

// Subject is the Keycloak user id (sub), equal in X-Userinfo and the token.
func (id Identity) Subject() string { return id.subject }

// Issuer is the verified token's iss ("" when no token was verified).
func (id Identity) Issuer() string { return id.issuer }

// Verified is true when a signed access token proved the identity, false
// when X-Userinfo was trusted as sent.
func (id Identity) Verified() bool { return id.verified }

// Claim is one claim, raw; the bytes are shared and must not be changed.
func (id Identity) Claim(name string) (json.RawMessage, bool) {
	v, ok := id.claims[name]
	return v, ok
}

// Claims is a copy of the claims upstreams may trust: with a verified token,
// only those the token carries. The caller may change the copy.
func (id Identity) Claims() Claims { return maps.Clone(id.claims) }

// ClaimsBytes is about what the claims take in memory, for caches' budgets.
func (id Identity) ClaimsBytes() int {
	n := 0
	for k, v := range id.claims {
		n += len(k) + len(v) + 48
	}
	return n
}

// OrgsShape is the shape the organization claim came in.
func (id Identity) OrgsShape() Shape { return id.orgs.Shape }

// Orgs is a copy of the organization claim, parsed.
func (id Identity) Orgs() Organizations { return id.orgs.clone() }

// WithOrgs is id with other organizations (copied).
func (id Identity) WithOrgs(orgs Organizations) Identity {
	id.orgs = orgs.clone()
	return id
}

// WithClaim is id with one claim set to raw (copied); id's own claims are
// left as they are.
func (id Identity) WithClaim(name string, raw json.RawMessage) Identity {
	claims := make(Claims, len(id.claims)+1)
	maps.Copy(claims, id.claims)
	claims[name] = append(json.RawMessage(nil), raw...)
	id.claims = claims
	return id
}

// WithoutClaim is id without the claim name; id's own claims are left as
// they are.
func (id Identity) WithoutClaim(name string) Identity {
	if _, ok := id.claims[name]; !ok {
		return id
	}
	claims := maps.Clone(id.claims)
	delete(claims, name)
	id.claims = claims
	return id
}
