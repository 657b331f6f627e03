package keycloak

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
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
	Subject  string
	Issuer   string
	Expiry   time.Time
	Audience []string
	// Claims are all claims of the token, raw.
	Claims map[string]json.RawMessage
}

// TokenVerifierOptions configure a TokenVerifier.
type TokenVerifierOptions struct {
	// Leeway tolerates clock skew on exp, nbf and iat. Default 30s.
	Leeway time.Duration
	// CacheSize bounds the verdict cache. Default 50000 tokens.
	CacheSize int
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

	mu    sync.RWMutex
	cache map[[32]byte]*Token
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
	if o.Leeway <= 0 {
		o.Leeway = 30 * time.Second
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 50000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &TokenVerifier{issuer: issuer, keys: ks, opts: o, cache: map[[32]byte]*Token{}}
}

// Issuer is the issuer tokens must carry.
func (v *TokenVerifier) Issuer() string { return v.issuer }

// Verify checks raw's signature, expiry, issuer and type, and its audience when
// audience is not "" (aud holds it, or azp equals it: Keycloak puts the client
// in azp and adds aud only with an audience mapper). Errors are *TokenError.
func (v *TokenVerifier) Verify(ctx context.Context, raw, audience string) (*Token, error) {
	key := sha256.Sum256([]byte(raw))
	now := v.opts.Now()
	v.mu.RLock()
	tok := v.cache[key]
	v.mu.RUnlock()
	if tok == nil {
		var err error
		tok, err = v.verifySignature(ctx, raw)
		if err != nil {
			return nil, err
		}
		v.remember(key, tok, now)
	}
	// Time and audience are checked on every use: the cached verdict is only
	// that the signature is good and the issuer right.
	if now.After(tok.Expiry.Add(v.opts.Leeway)) {
		return nil, &TokenError{Reason: ReasonExpired, Detail: "expired at " + tok.Expiry.UTC().Format(time.RFC3339)}
	}
	if audience != "" && !hasAudience(tok, audience) {
		return nil, &TokenError{Reason: ReasonWrongAudience, Detail: fmt.Sprintf("want %q", audience)}
	}
	return tok, nil
}

func (v *TokenVerifier) verifySignature(ctx context.Context, raw string) (*Token, error) {
	if strings.Count(raw, ".") != 2 {
		return nil, &TokenError{Reason: ReasonMalformed, Detail: "not a compact JWS"}
	}
	jws, err := jose.ParseSigned(raw, allowedAlgorithms)
	if err != nil {
		return nil, &TokenError{Reason: ReasonMalformed, Detail: "unparsable or unsupported algorithm"}
	}
	if len(jws.Signatures) != 1 {
		return nil, &TokenError{Reason: ReasonMalformed, Detail: "want exactly one signature"}
	}
	// Read iss before the key lookup: a token of another realm names a kid
	// this key set lacks, and "wrong issuer" is both the truer reason and no
	// reason to fetch the key set again. The signature is still checked below.
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified) == nil && unverified.Issuer != v.issuer {
		return nil, &TokenError{Reason: ReasonWrongIssuer, Detail: fmt.Sprintf("issuer %q, want %q", unverified.Issuer, v.issuer)}
	}
	kid := jws.Signatures[0].Header.KeyID
	key, err := v.keys.Key(ctx, kid)
	if err != nil {
		if errors.Is(err, ErrKeysUnavailable) {
			return nil, &TokenError{Reason: ReasonKeysUnavailable, Detail: err.Error()}
		}
		return nil, &TokenError{Reason: ReasonUnknownKey, Detail: fmt.Sprintf("kid %q", kid)}
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, &TokenError{Reason: ReasonBadSignature}
	}
	return v.checkClaims(payload)
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
	// Keycloak marks tokens with typ: an ID or refresh token of the same user
	// must not pass as the access token.
	if std.Type != "" && !strings.EqualFold(std.Type, "Bearer") {
		return nil, &TokenError{Reason: ReasonWrongType, Detail: fmt.Sprintf("typ %q", std.Type)}
	}
	now := v.opts.Now()
	if std.NotBefore != nil && now.Add(v.opts.Leeway).Before(std.NotBefore.Time()) {
		return nil, &TokenError{Reason: ReasonNotYetValid}
	}
	if std.IssuedAt != nil && now.Add(v.opts.Leeway).Before(std.IssuedAt.Time()) {
		return nil, &TokenError{Reason: ReasonNotYetValid, Detail: "issued in the future"}
	}
	aud := []string(std.Audience)
	if std.Azp != "" {
		aud = append(aud, "azp:"+std.Azp)
	}
	return &Token{Subject: std.Subject, Issuer: std.Issuer, Expiry: std.Expiry.Time(), Audience: aud, Claims: claims}, nil
}

func hasAudience(t *Token, want string) bool {
	for _, a := range t.Audience {
		if a == want || a == "azp:"+want {
			return true
		}
	}
	return false
}

func (v *TokenVerifier) remember(key [32]byte, tok *Token, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.opts.CacheSize {
		for k, t := range v.cache {
			if now.After(t.Expiry.Add(v.opts.Leeway)) {
				delete(v.cache, k)
			}
		}
		// Still full of live tokens: forget an arbitrary half rather than grow.
		for k := range v.cache {
			if len(v.cache) < v.opts.CacheSize/2 {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = tok
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
// prepares it, and the keys and verdicts must survive that.
type Verifiers struct {
	mu  sync.Mutex
	all map[string]*TokenVerifier
}

// DefaultVerifiers is the process-wide set.
var DefaultVerifiers = &Verifiers{all: map[string]*TokenVerifier{}}

// For returns the verifier for issuer whose keys are at jwksURL.
func (s *Verifiers) For(issuer, jwksURL string, leeway time.Duration) *TokenVerifier {
	id := issuer + "\x00" + jwksURL + "\x00" + leeway.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.all[id]; ok {
		return v
	}
	v := NewTokenVerifier(issuer, NewKeySet(jwksURL, nil), &TokenVerifierOptions{Leeway: leeway})
	s.all[id] = v
	return v
}

// JWKSURL is where Keycloak publishes issuer's signing keys.
func JWKSURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/protocol/openid-connect/certs"
}
