package keycloak

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/lru"
)

// Reasons a token is refused. They are stable strings: metrics label and the
// client's error body use them.
const (
	ReasonMalformed       = "token_malformed"
	ReasonUnknownKey      = "token_unknown_key"
	ReasonBadSignature    = "token_bad_signature"
	ReasonExpired         = "token_expired"
	ReasonNotYetValid     = "token_not_yet_valid"
	ReasonWrongIssuer     = "token_wrong_issuer"
	ReasonWrongAudience   = "token_wrong_audience"
	ReasonWrongType       = "token_wrong_type"
	ReasonKeysUnavailable = "token_keys_unavailable"
)

// TokenError says why a token was refused.
type TokenError struct {
	Reason string
	Detail string
}

func (e *TokenError) Error() string {
	if e.Detail == "" {
		return e.Reason
	}
	return e.Reason + ": " + e.Detail
}

// Token is a verified access token.
type Token struct {
	Subject string
	Issuer  string
	Expiry  time.Time
	// IssuedAt is iat; zero when the token has none.
	IssuedAt time.Time
	// SessionID is sid (Keycloak's session_state before 26), "" when
	// the token names no session.
	SessionID string
	// Audience is the token's aud, as the token says it.
	Audience []string
	// AuthorizedParty is azp: the client the token was issued to.
	AuthorizedParty string
	// Type is typ ("Bearer", "ID", "Refresh" at Keycloak; "" elsewhere).
	Type string
	// Claims are all claims of the token, raw.
	Claims map[string]json.RawMessage
}

// TokenVerifierOptions configure a TokenVerifier.
type TokenVerifierOptions struct {
	// Leeway tolerates clock skew on exp, nbf and iat. Zero is none: the
	// route config's default (30s) is applied there, so an explicit "0s"
	// stays zero.
	Leeway time.Duration
	// CacheBytes bounds the verdict cache in bytes. Default 8 MiB.
	CacheBytes int64
	// Now is the clock; tests set it.
	Now func() time.Time
}

// TokenVerifier checks Keycloak access tokens against one issuer's JWKS and
// remembers each verdict until the token expires, so a logged-in user costs
// one signature check per token, not one per request.
type TokenVerifier struct {
	issuer string
	keys   *KeySet
	opts   TokenVerifierOptions

	cache *lru.Cache[[32]byte, *Token]
}

var allowedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// NewTokenVerifier verifies tokens of issuer with the keys of ks.
func NewTokenVerifier(issuer string, ks *KeySet, opts *TokenVerifierOptions) *TokenVerifier {
	var o TokenVerifierOptions
	if opts != nil {
		o = *opts
	}
	if o.Leeway < 0 {
		o.Leeway = 0
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultVerdictCacheBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &TokenVerifier{issuer: issuer, keys: ks, opts: o, cache: lru.New[[32]byte, *Token](o.CacheBytes)}
}

// Issuer is the issuer tokens must carry.
func (v *TokenVerifier) Issuer() string { return v.issuer }

// DefaultVerdictCacheBytes is the default budget of a verifier's verdicts.
const DefaultVerdictCacheBytes = 8 << 20

// Token types Keycloak writes in typ.
const (
	TypeAccess = "Bearer"
	TypeID     = "ID"
)

// Verify checks an access token: signature, expiry, issuer and type, and its
// audience when audience is not "" (aud holds it, or azp equals it: Keycloak
// puts the client in azp and adds aud only with an audience mapper; the two
// are separate claims and checked separately). Errors are *TokenError.
func (v *TokenVerifier) Verify(ctx context.Context, raw, audience string) (*Token, error) {
	return v.verify(ctx, raw, TypeAccess, audience)
}

// VerifyID checks an ID token of client: signature, expiry, issuer, typ "ID",
// and client in aud (OIDC Core 3.1.3.7: an ID token's aud holds the client).
func (v *TokenVerifier) VerifyID(ctx context.Context, raw, client string) (*Token, error) {
	if client == "" {
		return nil, &TokenError{Reason: ReasonWrongAudience, Detail: "no client to check the ID token's aud against"}
	}
	tok, err := v.verify(ctx, raw, TypeID, "")
	if err != nil {
		return nil, err
	}
	if !slices.Contains(tok.Audience, client) {
		return nil, &TokenError{Reason: ReasonWrongAudience, Detail: fmt.Sprintf("ID token not issued to %q", client)}
	}
	return tok, nil
}

func (v *TokenVerifier) verify(ctx context.Context, raw, typ, audience string) (*Token, error) {
	key := sha256.Sum256([]byte(raw))
	now := v.opts.Now()
	tok, ok := v.cache.Get(key)
	if !ok {
		var err error
		tok, err = v.verifySignature(ctx, raw)
		if err != nil {
			return nil, err
		}
		v.cache.Add(key, tok, tok.size())
	}
	// Type, time and audience are checked on every use: the cached verdict
	// is only that the signature is good and the issuer right.
	if !typeIs(tok, typ) {
		return nil, &TokenError{Reason: ReasonWrongType, Detail: fmt.Sprintf("want typ %q", typ)}
	}
	if now.After(tok.Expiry.Add(v.opts.Leeway)) {
		return nil, &TokenError{Reason: ReasonExpired, Detail: "expired at " + tok.Expiry.UTC().Format(time.RFC3339)}
	}
	if audience != "" && !hasAudience(tok, audience) {
		return nil, &TokenError{Reason: ReasonWrongAudience, Detail: fmt.Sprintf("want %q", audience)}
	}
	return tok, nil
}

// typeIs: Keycloak marks every token with typ, so an ID or refresh token of
// the same user cannot pass as the access token. A token without typ (other
// issuers) passes as an access token only.
func typeIs(tok *Token, want string) bool {
	if tok.Type == "" {
		return want == TypeAccess
	}
	return strings.EqualFold(tok.Type, want)
}

// size is what a verdict costs in the cache, roughly: its claims and the
// fixed overhead of the entry.
func (t *Token) size() int64 {
	n := 256 + len(t.Subject) + len(t.Issuer) + len(t.AuthorizedParty) + len(t.Type) + len(t.SessionID)
	for _, a := range t.Audience {
		n += len(a) + 16
	}
	for k, raw := range t.Claims {
		n += len(k) + len(raw) + 48
	}
	return int64(n)
}

func (v *TokenVerifier) verifySignature(ctx context.Context, raw string) (*Token, error) {
	payload, _, err := v.verifyJWS(ctx, raw)
	if err != nil {
		return nil, err
	}
	return v.checkClaims(payload)
}

// verifyJWS checks raw's signature with the issuer's keys (asymmetric
// algorithms only) and returns the payload and the protected header's typ.
// A payload naming another issuer is refused before any key lookup.
func (v *TokenVerifier) verifyJWS(ctx context.Context, raw string) ([]byte, string, error) {
	if strings.Count(raw, ".") != 2 {
		return nil, "", &TokenError{Reason: ReasonMalformed, Detail: "not a compact JWS"}
	}
	jws, err := jose.ParseSigned(raw, allowedAlgorithms)
	if err != nil {
		return nil, "", &TokenError{Reason: ReasonMalformed, Detail: "unparsable or unsupported algorithm"}
	}
	if len(jws.Signatures) != 1 {
		return nil, "", &TokenError{Reason: ReasonMalformed, Detail: "want exactly one signature"}
	}
	// Read iss before the key lookup: a token of another realm names a kid
	// this key set lacks, and "wrong issuer" is both the truer reason and no
	// reason to fetch the key set again. The signature is still checked below.
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified) == nil && unverified.Issuer != v.issuer {
		return nil, "", &TokenError{Reason: ReasonWrongIssuer, Detail: fmt.Sprintf("issuer %q, want %q", unverified.Issuer, v.issuer)}
	}
	kid := jws.Signatures[0].Header.KeyID
	key, err := v.keys.Key(ctx, kid)
	if err != nil {
		if errors.Is(err, ErrKeysUnavailable) {
			return nil, "", &TokenError{Reason: ReasonKeysUnavailable, Detail: err.Error()}
		}
		return nil, "", &TokenError{Reason: ReasonUnknownKey, Detail: fmt.Sprintf("kid %q", kid)}
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, "", &TokenError{Reason: ReasonBadSignature}
	}
	typ, _ := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string)
	return payload, typ, nil
}

func (v *TokenVerifier) checkClaims(payload []byte) (*Token, error) {
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, &TokenError{Reason: ReasonMalformed, Detail: "claims are not a JSON object"}
	}
	var std struct {
		Subject   string       `json:"sub"`
		Issuer    string       `json:"iss"`
		Expiry    *numericDate `json:"exp"`
		NotBefore *numericDate `json:"nbf"`
		IssuedAt  *numericDate `json:"iat"`
		Audience  audience     `json:"aud"`
		Type      string       `json:"typ"`
		Azp       string       `json:"azp"`
		SessionID string       `json:"sid"`
		State     string       `json:"session_state"`
	}
	if err := json.Unmarshal(payload, &std); err != nil {
		return nil, &TokenError{Reason: ReasonMalformed, Detail: "registered claims have wrong types"}
	}
	if std.Issuer != v.issuer {
		return nil, &TokenError{Reason: ReasonWrongIssuer, Detail: fmt.Sprintf("issuer %q, want %q", std.Issuer, v.issuer)}
	}
	if std.Subject == "" {
		return nil, &TokenError{Reason: ReasonMalformed, Detail: "no sub"}
	}
	if std.Expiry == nil {
		return nil, &TokenError{Reason: ReasonMalformed, Detail: "no exp"}
	}
	now := v.opts.Now()
	if std.NotBefore != nil && now.Add(v.opts.Leeway).Before(std.NotBefore.Time()) {
		return nil, &TokenError{Reason: ReasonNotYetValid}
	}
	if std.IssuedAt != nil && now.Add(v.opts.Leeway).Before(std.IssuedAt.Time()) {
		return nil, &TokenError{Reason: ReasonNotYetValid, Detail: "issued in the future"}
	}
	tok := &Token{Subject: std.Subject, Issuer: std.Issuer, Expiry: std.Expiry.Time(), Audience: std.Audience,
		AuthorizedParty: std.Azp, Type: std.Type, SessionID: std.SessionID, Claims: claims}
	if std.IssuedAt != nil {
		tok.IssuedAt = std.IssuedAt.Time()
	}
	if tok.SessionID == "" {
		tok.SessionID = std.State
	}
	return tok, nil
}

func hasAudience(t *Token, want string) bool {
	return slices.Contains(t.Audience, want) || t.AuthorizedParty == want
}

// numericDate reads a JWT NumericDate (seconds since the epoch, maybe fractional).
type numericDate float64

func (d *numericDate) Time() time.Time {
	sec := float64(*d)
	return time.Unix(int64(sec), int64((sec-float64(int64(sec)))*1e9))
}

// audience reads aud as a string or a list of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// Verifiers shares one TokenVerifier per issuer and key set URL across route
// configs: the runner parses a route's config again every time APISIX
// prepares it, and the keys and verdicts must survive that. main builds one
// set and hands it to the plugins.
type Verifiers struct {
	// Tracer is handed to every key set the verifiers fetch (KeySetOptions.Tracer). Set it before
	// the first For; default nil: no spans.
	Tracer trace.Tracer

	mu         sync.Mutex
	all        map[string]*TokenVerifier
	cacheBytes int64
}

// maxVerifiers bounds how many issuers one process verifies for: each is a
// route config's issuer, so a handful in practice.
const maxVerifiers = 64

// NewVerifiers makes an empty set whose verifiers keep cacheBytes of verdicts
// each (0: the default).
func NewVerifiers(cacheBytes int64) *Verifiers {
	return &Verifiers{all: map[string]*TokenVerifier{}, cacheBytes: cacheBytes}
}

// For returns the verifier for issuer whose keys are at jwksURL, or an error
// when the process already verifies for too many issuers.
func (s *Verifiers) For(issuer, jwksURL string, leeway time.Duration) (*TokenVerifier, error) {
	id := issuer + "\x00" + jwksURL + "\x00" + leeway.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.all[id]; ok {
		return v, nil
	}
	if len(s.all) >= maxVerifiers {
		return nil, fmt.Errorf("more than %d distinct issuer, jwks_uri and leeway settings in route configs", maxVerifiers)
	}
	v := NewTokenVerifier(issuer, NewKeySet(jwksURL, &KeySetOptions{Tracer: s.Tracer}), &TokenVerifierOptions{Leeway: leeway, CacheBytes: s.cacheBytes})
	s.all[id] = v
	return v, nil
}

// JWKSURL is where Keycloak publishes issuer's signing keys.
func JWKSURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/protocol/openid-connect/certs"
}
