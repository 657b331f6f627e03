package keycloak

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Reasons a logout token is refused, besides the token_* reasons every token
// shares (signature, issuer, audience, times).
const (
	ReasonNotLogout     = "token_not_logout"
	ReasonTooOld        = "token_too_old"
	ReasonNoSession     = "token_no_session"
	ReasonNonce         = "token_has_nonce"
	ReasonNoJTI         = "token_no_jti"
	ReasonNoIssuedAt    = "token_no_iat"
	ReasonMissingEvents = "token_no_logout_event"
)

// BackchannelLogoutEvent is the member of a logout token's events claim that
// makes it one (OpenID Connect Back-Channel Logout 1.0, 2.4).
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// MaxLogoutTokenAge bounds how long after its iat a logout token is accepted.
// Keycloak signs the token and posts it in the same call, so a genuine one
// arrives within seconds; an older one is a copy being replayed. The bound is
// also what keeps the record of seen jti values small: a jti need only be
// remembered as long as its token could be accepted (MaxLogoutTokenAge plus
// the leeway), however far away the token's exp is (Keycloak sets none, or
// a long one).
const MaxLogoutTokenAge = 5 * time.Minute

// Logout token types. Keycloak (26.5) writes typ "Logout" in the claims; the
// specification recommends "logout+jwt" in the JWS header. An access token
// ("Bearer") or an ID token ("ID") of the same realm never passes.
const (
	TypeLogout       = "Logout"
	TypeLogoutHeader = "logout+jwt"
)

// LogoutToken is a verified logout token.
type LogoutToken struct {
	Issuer string
	// Subject is sub, "" when the token names only a session.
	Subject string
	// SessionID is sid, "" when the token names only a subject.
	SessionID string
	JTI       string
	IssuedAt  time.Time
	// Until is the last moment the token could be accepted: what its jti
	// must be remembered for.
	Until time.Time
}

// VerifyLogout checks a logout token sent to client (the one whose
// back-channel logout URL received it) as OpenID Connect Back-Channel Logout
// 1.0, 2.6 says: signed by a key of the issuer with an asymmetric algorithm,
// iss the issuer, client in aud, iat present and recent, exp (if any) not
// passed, jti present, the back-channel logout member in events, sid or sub,
// no nonce; and a typ, if any, of a logout token. The token is never cached:
// each is seen once, and a flood of them must not evict access-token
// verdicts. Errors are *TokenError.
func (v *TokenVerifier) VerifyLogout(ctx context.Context, raw, client string) (*LogoutToken, error) {
	if client == "" {
		return nil, &TokenError{Reason: ReasonWrongAudience, Detail: "no client to check the logout token's aud against"}
	}
	payload, headerType, err := v.verifyJWS(ctx, raw)
	if err != nil {
		return nil, err
	}
	if headerType != "" && !isLogoutHeaderType(headerType) {
		return nil, &TokenError{Reason: ReasonWrongType, Detail: fmt.Sprintf("header typ %q", headerType)}
	}
	var c struct {
		Issuer    string                     `json:"iss"`
		Subject   string                     `json:"sub"`
		SessionID string                     `json:"sid"`
		JTI       string                     `json:"jti"`
		Type      string                     `json:"typ"`
		Audience  audience                   `json:"aud"`
		IssuedAt  *numericDate               `json:"iat"`
		Expiry    *numericDate               `json:"exp"`
		NotBefore *numericDate               `json:"nbf"`
		Events    map[string]json.RawMessage `json:"events"`
		Nonce     json.RawMessage            `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, &TokenError{Reason: ReasonMalformed, Detail: "claims are not a JSON object of the right types"}
	}
	if c.Issuer != v.issuer {
		return nil, &TokenError{Reason: ReasonWrongIssuer, Detail: fmt.Sprintf("issuer %q, want %q", c.Issuer, v.issuer)}
	}
	// Type first: an access or ID token is refused as what it is.
	if c.Type != "" && c.Type != TypeLogout && !strings.EqualFold(c.Type, TypeLogoutHeader) {
		return nil, &TokenError{Reason: ReasonWrongType, Detail: fmt.Sprintf("typ %q", c.Type)}
	}
	if !slices.Contains(c.Audience, client) {
		return nil, &TokenError{Reason: ReasonWrongAudience, Detail: fmt.Sprintf("want %q", client)}
	}
	now := v.opts.Now()
	leeway := v.opts.Leeway
	if c.IssuedAt == nil {
		return nil, &TokenError{Reason: ReasonNoIssuedAt}
	}
	iat := c.IssuedAt.Time()
	if now.Add(leeway).Before(iat) {
		return nil, &TokenError{Reason: ReasonNotYetValid, Detail: "issued in the future"}
	}
	until := iat.Add(MaxLogoutTokenAge + leeway)
	if now.After(until) {
		return nil, &TokenError{Reason: ReasonTooOld, Detail: "issued at " + iat.UTC().Format(time.RFC3339)}
	}
	if c.Expiry != nil {
		exp := c.Expiry.Time().Add(leeway)
		if now.After(exp) {
			return nil, &TokenError{Reason: ReasonExpired, Detail: "expired at " + c.Expiry.Time().UTC().Format(time.RFC3339)}
		}
		if exp.Before(until) {
			until = exp
		}
	}
	if c.NotBefore != nil && now.Add(leeway).Before(c.NotBefore.Time()) {
		return nil, &TokenError{Reason: ReasonNotYetValid}
	}
	if c.JTI == "" {
		return nil, &TokenError{Reason: ReasonNoJTI}
	}
	// The member must be a JSON object (2.4); its content is not defined.
	if ev, ok := c.Events[BackchannelLogoutEvent]; !ok || !isJSONObject(ev) {
		return nil, &TokenError{Reason: ReasonMissingEvents}
	}
	if c.SessionID == "" && c.Subject == "" {
		return nil, &TokenError{Reason: ReasonNoSession, Detail: "neither sid nor sub"}
	}
	// A nonce marks an ID token (2.4: "prohibited"): refused whatever its value.
	if c.Nonce != nil {
		return nil, &TokenError{Reason: ReasonNonce}
	}
	return &LogoutToken{Issuer: c.Issuer, Subject: c.Subject, SessionID: c.SessionID, JTI: c.JTI, IssuedAt: iat,
		Until: until}, nil
}

// isLogoutHeaderType accepts "logout+jwt" with or without the "application/"
// prefix (RFC 7515, 4.1.9), in any case, and the generic "JWT" that
// Keycloak's access and ID tokens carry too: the claims' typ, events and
// nonce tell those apart.
func isLogoutHeaderType(t string) bool {
	t = strings.ToLower(t)
	return t == TypeLogoutHeader || t == "application/"+TypeLogoutHeader || t == "jwt"
}

func isJSONObject(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil && m != nil
}
