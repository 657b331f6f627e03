package verify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultHeader is the header userinfo puts the assertion in unless its
// route config says otherwise.
const DefaultHeader = "X-Identity-Assertion"

// Defaults of Config.
const (
	DefaultLeeway          = 5 * time.Second
	DefaultRefreshInterval = 10 * time.Second
	// DefaultCacheTTL matches the Cache-Control max-age of the JWKS route.
	DefaultCacheTTL = 5 * time.Minute
	// MaxTokenBytes bounds the work spent on one header: an assertion with
	// a handful of organizations is well under 4 KiB.
	MaxTokenBytes = 32 << 10
	// maxJWKSBytes and maxKeys bound what a key set response may cost.
	maxJWKSBytes = 1 << 20
	maxKeys      = 100
)

const (
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

// Config says where the keys come from and what an assertion must name.
type Config struct {
	// JWKSURL is the gateway's key set route (userinfo {"jwks":true}).
	// Exactly one of JWKSURL and JWKS must be set.
	JWKSURL string
	// JWKS is a static key set ({"keys":[...]}), never refreshed.
	JWKS []byte
	// Issuer and Audience must equal the assertion's iss and (one of) its aud:
	// the userinfo route's assertion.issuer and assertion.audience. Required.
	Issuer   string
	Audience string
	// TokenIssuer, when set, must equal the assertion's token_iss: the iss of
	// the access token the gateway verified, the Keycloak realm URL such as
	// "https://sso.example.org/realms/olapps" (the userinfo route's
	// "issuer"). An assertion with another token_iss, or none (a route with
	// verify_token false), is refused with ReasonTokenIssuer. Set it: a sub
	// is unique only within its realm, and iss names the gateway, not the
	// realm. Left empty, token_iss is not checked (Identity.TokenIssuer
	// still says it), and the app must key its users by (TokenIssuer,
	// Subject) or be sure that only routes of one realm sign for Audience
	// (`go-runner check` refuses one iss and aud signed for two realms).
	TokenIssuer string
	// Header carrying the assertion. Default DefaultHeader.
	Header string
	// Leeway tolerated on exp and iat for clock skew. Default DefaultLeeway;
	// a negative value means none.
	Leeway time.Duration
	// RefreshInterval is the least time between two fetches of the key set.
	// Default DefaultRefreshInterval.
	RefreshInterval time.Duration
	// CacheTTL is how long a fetched key set is used before it is fetched
	// again. Default DefaultCacheTTL.
	CacheTTL time.Duration
	// HTTPClient fetches the key set. Default: a client with a 5s timeout.
	HTTPClient *http.Client
	// Logger receives the key set fetch failures. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Verifier checks assertions. It is safe for concurrent use.
type Verifier struct {
	issuer, audience, header string
	tokenIssuer              string
	leeway                   time.Duration
	now                      func() time.Time
	keys                     *keySource
	log                      *slog.Logger
}

// New checks cfg and returns a Verifier. With a JWKSURL nothing is fetched
// until the first assertion arrives.
func New(cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("verify: Issuer and Audience are required")
	}
	if (cfg.JWKSURL == "") == (len(cfg.JWKS) == 0) {
		return nil, errors.New("verify: set exactly one of JWKSURL and JWKS")
	}
	v := &Verifier{
		issuer:      cfg.Issuer,
		audience:    cfg.Audience,
		header:      cfg.Header,
		tokenIssuer: cfg.TokenIssuer,
		leeway:      cfg.Leeway,
		now:         cfg.Now,
		log:         cfg.Logger,
	}
	if v.header == "" {
		v.header = DefaultHeader
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.Default()
	}
	if len(cfg.JWKS) > 0 {
		set, err := parseKeySet(cfg.JWKS)
		if err != nil {
			return nil, fmt.Errorf("verify: static key set: %w", err)
		}
		v.keys = staticKeys(set)
		return v, nil
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	v.keys = remoteKeys(cfg.JWKSURL, client, orDefault(cfg.RefreshInterval, DefaultRefreshInterval),
		orDefault(cfg.CacheTTL, DefaultCacheTTL), v.now, v.log)
	return v, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Header is the name of the header Verify reads.
func (v *Verifier) Header() string { return v.header }

// Verify checks the assertion in r's header. Errors are *Error.
func (v *Verifier) Verify(r *http.Request) (Identity, error) {
	values := r.Header.Values(v.header)
	switch len(values) {
	case 0:
		return Identity{}, refuse(ReasonMissing, "no %s header", v.header)
	case 1:
	default:
		// Two assertions: a proxy appended one of its own, or someone hopes the
		// app reads another one than the gateway checked. Refuse both.
		return Identity{}, refuse(ReasonMalformed, "%d %s headers", len(values), v.header)
	}
	if values[0] == "" {
		return Identity{}, refuse(ReasonMissing, "empty %s header", v.header)
	}
	return v.VerifyToken(r.Context(), values[0])
}

// VerifyToken checks one assertion (compact JWS). Errors are *Error.
func (v *Verifier) VerifyToken(ctx context.Context, token string) (Identity, error) {
	if len(token) > MaxTokenBytes {
		return Identity{}, refuse(ReasonMalformed, "assertion of %d bytes, more than %d", len(token), MaxTokenBytes)
	}
	hdr, err := parseHeader(token)
	if err != nil {
		return Identity{}, err
	}
	if hdr.Alg != algES256 && hdr.Alg != algEdDSA {
		return Identity{}, refuse(ReasonAlgorithm, "algorithm %q is not accepted (ES256 or EdDSA only)", hdr.Alg)
	}
	if hdr.Kid == "" {
		return Identity{}, refuse(ReasonUnknownKey, "no kid in the header")
	}
	k, err := v.keys.lookup(ctx, hdr.Kid)
	if err != nil {
		return Identity{}, err
	}
	if k.alg != hdr.Alg {
		return Identity{}, refuse(ReasonAlgorithm, "key %q is an %s key, the header says %s", hdr.Kid, k.alg, hdr.Alg)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(hdr.Alg)})
	if err != nil {
		return Identity{}, &Error{Reason: ReasonMalformed, Err: fmt.Errorf("verify: %w", err)}
	}
	payload, err := jws.Verify(k.public)
	if err != nil {
		return Identity{}, refuse(ReasonSignature, "signature does not verify with key %q", hdr.Kid)
	}
	return v.checkClaims(payload)
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// parseHeader reads alg and kid before anything else, so that the algorithm
// is refused before any key is chosen or any library looks at the token.
func parseHeader(token string) (header, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return header{}, refuse(ReasonMalformed, "not a compact JWS (%d parts)", len(parts))
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return header{}, refuse(ReasonMalformed, "header is not base64url")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return header{}, refuse(ReasonMalformed, "header is not a JSON object")
	}
	// crit and b64 change how the token must be read (RFC 7515 4.1.11, RFC
	// 7797); the runner sets neither, and libraries differ on them.
	for _, name := range []string{"crit", "b64"} {
		if _, ok := fields[name]; ok {
			return header{}, refuse(ReasonMalformed, "header parameter %q is not accepted", name)
		}
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return header{}, refuse(ReasonMalformed, "header alg and kid must be strings")
	}
	return h, nil
}

// key is one usable public key of the set.
type key struct {
	alg    string
	public any
}

// parseKeySet keeps the P-256 and Ed25519 signature keys of a JWKS with a
// kid, and ignores the others (an RSA key, an encryption key), so that a set
// shared with other uses still works. A key whose own alg disagrees with its
// type is ignored too.
func parseKeySet(data []byte) (map[string]key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %w", err)
	}
	if len(set.Keys) > maxKeys {
		return nil, fmt.Errorf("%d keys, more than %d", len(set.Keys), maxKeys)
	}
	out := make(map[string]key, len(set.Keys))
	for _, raw := range set.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil || jwk.KeyID == "" || !jwk.IsPublic() {
			continue
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			continue
		}
		var alg string
		switch pub := jwk.Key.(type) {
		case *ecdsa.PublicKey:
			if pub.Curve != elliptic.P256() {
				continue
			}
			alg = algES256
		case ed25519.PublicKey:
			alg = algEdDSA
		default:
			continue
		}
		if jwk.Algorithm != "" && jwk.Algorithm != alg {
			continue
		}
		if _, dup := out[jwk.KeyID]; dup {
			// Two keys under one kid: which one an assertion means is
			// ambiguous, so neither is trusted.
			out[jwk.KeyID] = key{}
			continue
		}
		out[jwk.KeyID] = key{alg: alg, public: jwk.Key}
	}
	for kid, k := range out {
		if k.public == nil {
			delete(out, kid)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no usable key (P-256 or Ed25519 signature keys with a kid)")
	}
	return out, nil
}

// checkClaims reads the verified payload.
func (v *Verifier) checkClaims(payload []byte) (Identity, error) {
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return Identity{}, refuse(ReasonClaims, "payload is not a JSON object")
	}
	iss, err := stringClaim(claims, "iss")
	if err != nil {
		return Identity{}, err
	}
	if iss != v.issuer {
		return Identity{}, refuse(ReasonIssuer, "issuer %q, want %q", iss, v.issuer)
	}
	if err := v.checkAudience(claims["aud"]); err != nil {
		return Identity{}, err
	}
	if err := v.checkTokenIssuer(claims); err != nil {
		return Identity{}, err
	}
	exp, err := timeClaim(claims, "exp", true)
	if err != nil {
		return Identity{}, err
	}
	iat, err := timeClaim(claims, "iat", true)
	if err != nil {
		return Identity{}, err
	}
	nbf, err := timeClaim(claims, "nbf", false)
	if err != nil {
		return Identity{}, err
	}
	now := v.now()
	if !now.Before(exp.Add(v.leeway)) {
		return Identity{}, refuse(ReasonExpired, "expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if iat.After(now.Add(v.leeway)) {
		return Identity{}, refuse(ReasonNotYetValid, "issued in the future (%s)", iat.UTC().Format(time.RFC3339))
	}
	if !nbf.IsZero() && nbf.After(now.Add(v.leeway)) {
		return Identity{}, refuse(ReasonNotYetValid, "not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	return identityFrom(claims, iat, exp)
}

// checkTokenIssuer: a token_iss that is there must be a string whether or
// not one is expected, so that Identity.TokenIssuer never reads a wrong type
// as "".
func (v *Verifier) checkTokenIssuer(claims map[string]json.RawMessage) error {
	raw, present := claims[claimTokenIssuer]
	if present {
		if _, err := stringClaim(claims, claimTokenIssuer); err != nil {
			return err
		}
	}
	if v.tokenIssuer == "" {
		return nil
	}
	if !present {
		return refuse(ReasonTokenIssuer, "no %s: the gateway verified no token of %q for this assertion", claimTokenIssuer, v.tokenIssuer)
	}
	var got string
	_ = json.Unmarshal(raw, &got)
	if got != v.tokenIssuer {
		return refuse(ReasonTokenIssuer, "token issuer %q, want %q", got, v.tokenIssuer)
	}
	return nil
}

// claimTokenIssuer is the verified access token's iss, as the runner signs it.
const claimTokenIssuer = "token_iss"

func (v *Verifier) checkAudience(raw json.RawMessage) error {
	if raw == nil {
		return refuse(ReasonClaims, "no aud")
	}
	var one string
	if isNull(raw) {
		return refuse(ReasonClaims, "aud must be a string or a list of strings")
	}
	if json.Unmarshal(raw, &one) == nil {
		if one != v.audience {
			return refuse(ReasonAudience, "audience %q, want %q", one, v.audience)
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || many == nil {
		return refuse(ReasonClaims, "aud must be a string or a list of strings")
	}
	for _, a := range many {
		if a == v.audience {
			return nil
		}
	}
	return refuse(ReasonAudience, "audience %q does not include %q", many, v.audience)
}

func stringClaim(claims map[string]json.RawMessage, name string) (string, error) {
	raw, ok := claims[name]
	if !ok {
		return "", refuse(ReasonClaims, "no %s", name)
	}
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", refuse(ReasonClaims, "%s must be a string", name)
	}
	return s, nil
}

func timeClaim(claims map[string]json.RawMessage, name string, required bool) (time.Time, error) {
	raw, ok := claims[name]
	if !ok {
		if required {
			return time.Time{}, refuse(ReasonClaims, "no %s", name)
		}
		return time.Time{}, nil
	}
	var n float64
	if isNull(raw) || json.Unmarshal(raw, &n) != nil || n < 0 || n > maxTimestamp {
		return time.Time{}, refuse(ReasonClaims, "%s must be a number of seconds since 1970 before 10000", name)
	}
	sec := int64(n)
	return time.Unix(sec, int64((n-float64(sec))*1e9)), nil
}

// maxTimestamp is 9999-12-31T23:59:59Z: beyond it a time claim is nonsense,
// and the clients in other languages cannot represent it.
const maxTimestamp = 253402300799

// isNull tells a JSON null, which json.Unmarshal turns into a zero value
// without an error.
func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}
