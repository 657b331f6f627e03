package assertion

import (
	"encoding/json"
	"fmt"
	"time"
)

// Claims is the payload of an identity assertion. It is the one definition of
// what an upstream receives: userinfo signs it, and the vectors under
// testdata/assertions are generated from it, so the verifiers in verify/ and
// clients/python/ are held to the same shape.
type Claims struct {
	// Issuer (iss) is the route's assertion.issuer: who signed. Audience
	// (aud) is the app the assertion is for.
	Issuer   string
	Audience string
	Subject  string
	// TokenIssuer (token_iss) is the iss of the verified access token: the
	// Keycloak realm the subject belongs to. A sub is unique only within
	// its realm, so an app that trusts one realm must check this claim, not
	// only iss, which names the gateway. "" (the claim left out) when no
	// token was verified (userinfo's verify_token false).
	TokenIssuer string
	// IssuedAt and Expiry bound the assertion's validity. An assertion is
	// reused for the same identity for part of its lifetime, so they describe
	// the assertion, not the request that carries it.
	IssuedAt time.Time
	Expiry   time.Time
	// ID is the jti: unique per signed assertion (not per request).
	ID string
	// Organization is the claim in Keycloak's map shape with attributes:
	// {"alias":{"id":"<uuid>","attr":["v"]}}. Never nil when encoded ({}).
	Organization json.RawMessage
	// OrganizationSource says where the organizations came from: "token"
	// (the verified access token), or orgsync's "keycloak", "cache", "stale".
	OrganizationSource string
	// Profile holds the other identity claims, raw, each taken from the
	// verified token or from Keycloak: email, name, preferred_username,
	// groups, roles.
	Profile map[string]json.RawMessage
}

// ProfileClaims are the claims copied into Profile when present.
// email_verified is there so that an app can tell an address Keycloak
// checked from one the user typed in: only the first may name an account.
var ProfileClaims = []string{"email", "email_verified", "name", "preferred_username", "groups", "roles"}

// ClaimTokenIssuer is the name of TokenIssuer in the payload.
const ClaimTokenIssuer = "token_iss"

// Encode renders the claims as the JWS payload, registered claims first.
func (c *Claims) Encode() ([]byte, error) {
	if !c.Expiry.After(c.IssuedAt) {
		return nil, fmt.Errorf("assertion: exp must be after iat")
	}
	payload, err := c.identity()
	if err != nil {
		return nil, err
	}
	payload["iat"] = c.IssuedAt.Unix()
	payload["exp"] = c.Expiry.Unix()
	if c.ID != "" {
		payload["jti"] = c.ID
	}
	return json.Marshal(payload)
}

// registeredClaims are set from Claims' own fields: a Profile entry of the
// same name is ignored.
var registeredClaims = map[string]bool{"iss": true, "aud": true, "sub": true, "iat": true, "exp": true, "jti": true,
	ClaimTokenIssuer: true, "organization": true, "organization_source": true}

// identity is the payload without what describes one signed assertion (iat,
// exp, jti): equal identities give equal maps, which is what a reused
// assertion is keyed by.
func (c *Claims) identity() (map[string]any, error) {
	if c.Issuer == "" || c.Audience == "" || c.Subject == "" {
		return nil, fmt.Errorf("assertion: iss, aud and sub are required")
	}
	org := c.Organization
	if len(org) == 0 {
		org = json.RawMessage("{}")
	}
	payload := map[string]any{
		"iss":          c.Issuer,
		"aud":          c.Audience,
		"sub":          c.Subject,
		"organization": org,
	}
	if c.TokenIssuer != "" {
		payload[ClaimTokenIssuer] = c.TokenIssuer
	}
	if c.OrganizationSource != "" {
		payload["organization_source"] = c.OrganizationSource
	}
	for name, v := range c.Profile {
		if registeredClaims[name] || len(v) == 0 {
			continue
		}
		payload[name] = v
	}
	return payload, nil
}

// SignClaims encodes and signs c.
func (k *KeyRing) SignClaims(c *Claims) (string, error) {
	body, err := c.Encode()
	if err != nil {
		return "", err
	}
	return k.Sign(body)
}
