package userinfo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// Reasons a request's identity is refused, besides keycloak's token_* reasons.
const (
	ReasonNoIdentity        = "no_identity"
	ReasonMalformedUserinfo = "userinfo_malformed"
	ReasonMissingToken      = "access_token_missing"
	ReasonMissingUserinfo   = "userinfo_missing"
	ReasonSubjectMismatch   = "sub_mismatch"
	ReasonNoSubject         = "sub_missing"
	ReasonMisconfigured     = "misconfigured"
	ReasonNoSigningKey      = "no_signing_key"
	ReasonTooManyHeaders    = "too_many_headers"
	// apisixHeaderLimit is how many request headers APISIX's ext-plugin hands
	// the runner (ngx.req.get_headers() default).
	apisixHeaderLimit        = 100
	reasonMethodNotAllowed   = "method_not_allowed"
	verifyTimeout            = 5 * time.Second
	outcomeVerified          = "verified"
	outcomeAnonymous         = "anonymous"
	outcomeRejected          = "rejected"
	outcomeMisconfigured     = "misconfigured"
	outcomeJWKS              = "jwks"
	outcomeHandedOff         = "handed_off"
	headerCacheControlMaxAge = "public, max-age=300"
)

// refusal is why a request's identity failed.
type refusal struct {
	status int
	reason string
	detail string
}

func (c *Conf) serve(w http.ResponseWriter, r pkgHTTP.Request) {
	if c.err != nil {
		metricRequests.WithLabelValues(outcomeMisconfigured).Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured, c.err.Error())
		return
	}
	if c.JWKS {
		c.serveJWKS(w, r)
		return
	}
	h := r.Header()
	if n := headerCount(h); n >= apisixHeaderLimit {
		// APISIX shows the runner only the first 100 headers but passes all
		// of them upstream: a forged X_Userinfo placed after the hundredth
		// could not be seen, so could not be removed.
		metricRequests.WithLabelValues(outcomeRejected).Inc()
		metricFailures.WithLabelValues(ReasonTooManyHeaders).Inc()
		identity.Refuse(w, http.StatusRequestHeaderFieldsTooLarge, ReasonTooManyHeaders,
			fmt.Sprintf("%d or more request headers: identity headers beyond the %dth cannot be checked", apisixHeaderLimit, apisixHeaderLimit))
		return
	}
	c.strip.Strip(h)

	userinfo := h.Get(identity.HeaderUserinfo)
	token := h.Get(identity.HeaderAccessToken)
	if userinfo == "" && token == "" {
		c.anonymous(w, r, refusal{status: http.StatusUnauthorized, reason: ReasonNoIdentity})
		return
	}
	id, ref := c.establish(r.Context(), userinfo, token)
	if ref != nil {
		metricFailures.WithLabelValues(ref.reason).Inc()
		if slog.Default().Enabled(r.Context(), slog.LevelDebug) {
			logger().Debug("identity refused", "reason", ref.reason, "detail", ref.detail)
		}
		if c.OnInvalid == OnInvalidReject {
			metricRequests.WithLabelValues(outcomeRejected).Inc()
			identity.Refuse(w, ref.status, ref.reason, ref.detail)
			return
		}
		c.anonymous(w, r, *ref)
		return
	}
	c.checkIDToken(h, id.Subject)
	id.TokenVerified = c.verify

	if identity.DefaultChains.FollowerKnown(r) {
		// orgsync follows on this route and will emit once, with the
		// current organizations: emitting here would sign twice.
		metricRequests.WithLabelValues(outcomeHandedOff).Inc()
		identity.DefaultChains.Hand(r, &identity.Handoff{Identity: id, Emitter: c})
		return
	}
	if err := c.Emit(r, id); err != nil {
		metricRequests.WithLabelValues(outcomeMisconfigured).Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonNoSigningKey, err.Error())
		return
	}
	metricRequests.WithLabelValues(outcomeVerified).Inc()
	identity.DefaultChains.Hand(r, &identity.Handoff{Identity: id, Emitter: c, Emitted: true})
}

func headerCount(h pkgHTTP.Header) int {
	n := 0
	for _, values := range h.View() {
		n += len(values)
	}
	return n
}

// anonymous lets the request through with no identity at all, unless the
// route requires a user.
func (c *Conf) anonymous(w http.ResponseWriter, r pkgHTTP.Request, why refusal) {
	if c.RequireUser {
		metricRequests.WithLabelValues(outcomeRejected).Inc()
		if why.reason == "" {
			why.reason = ReasonNoIdentity
		}
		identity.Refuse(w, http.StatusUnauthorized, why.reason, why.detail)
		return
	}
	metricRequests.WithLabelValues(outcomeAnonymous).Inc()
	identity.DeleteAllSpellings(r.Header(), identity.OIDCHeaders...)
}

// establish proves the identity: X-Userinfo decoded, the token verified, both
// naming the same user.
func (c *Conf) establish(ctx context.Context, userinfo, token string) (*identity.Identity, *refusal) {
	var key [32]byte
	if c.verify && token != "" {
		key = sessionKey(userinfo, token)
		if id := c.sessions.get(key, time.Now()); id != nil {
			return id, nil
		}
	}
	var claims identity.Claims
	if userinfo != "" {
		var err error
		claims, err = identity.DecodeUserinfo(userinfo, c.MaxUserinfoBytes)
		if err != nil {
			return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMalformedUserinfo, detail: err.Error()}
		}
	}
	if !c.verify {
		if claims == nil {
			return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMissingUserinfo,
				detail: "verify_token is false and there is no X-Userinfo"}
		}
		if claims.Subject() == "" {
			return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonNoSubject}
		}
		return newIdentity(claims)
	}
	if token == "" {
		return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMissingToken,
			detail: "X-Userinfo without X-Access-Token cannot be verified"}
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	tok, err := c.verifier.Verify(ctx, token, c.Audience)
	if err != nil {
		var te *keycloak.TokenError
		if errors.As(err, &te) {
			status := http.StatusUnauthorized
			if te.Reason == keycloak.ReasonKeysUnavailable {
				status = http.StatusServiceUnavailable
			}
			return nil, &refusal{status: status, reason: te.Reason, detail: te.Detail}
		}
		return nil, &refusal{status: http.StatusUnauthorized, reason: "token_invalid"}
	}
	id, ref := bindToToken(claims, tok)
	if ref == nil {
		c.sessions.put(key, id, tok.Expiry.Add(c.Leeway.Std()))
	}
	return id, ref
}

// bindToToken checks that X-Userinfo's claims describe the token's user and
// merges the token's claims in.
func bindToToken(claims identity.Claims, tok *keycloak.Token) (*identity.Identity, *refusal) {
	if claims == nil {
		// Bearer use: no userinfo, the token's claims are the identity.
		claims = identity.Claims(tok.Claims).Clone()
	} else {
		if sub := claims.Subject(); sub != tok.Subject {
			if sub == "" {
				return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonNoSubject}
			}
			return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonSubjectMismatch,
				detail: "X-Userinfo names another user than the access token"}
		}
		if !claims.Merge(tok.Claims) {
			return newIdentity(claims)
		}
	}
	// The token's claims replaced some (or, for a bearer token, are all the
	// claims): check their types as X-Userinfo's were checked.
	if err := claims.Validate(); err != nil {
		return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMalformedUserinfo, detail: err.Error()}
	}
	return newIdentity(claims)
}

func newIdentity(claims identity.Claims) (*identity.Identity, *refusal) {
	orgs, err := claims.Organizations()
	if err != nil {
		return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMalformedUserinfo, detail: err.Error()}
	}
	return &identity.Identity{Subject: claims.Subject(), Claims: claims, Orgs: orgs}, nil
}

// checkIDToken removes X-ID-Token when it does not describe the verified
// user: it is unsigned, so on a route where a client can reach us without
// openid-connect overwriting it, it could name anyone.
func (c *Conf) checkIDToken(h pkgHTTP.Header, sub string) {
	v := h.Get(identity.HeaderIDToken)
	if v == "" {
		return
	}
	claims, err := identity.DecodeUserinfo(v, c.MaxUserinfoBytes)
	if err != nil || claims.Subject() != sub {
		h.Del(identity.HeaderIDToken)
	}
}

// Emit writes X-Userinfo, the claim headers and the signed assertion for id.
// orgsync calls it after replacing the organizations.
func (c *Conf) Emit(r pkgHTTP.Request, id *identity.Identity) error {
	h := r.Header()
	claims := id.Claims
	if id.Orgs.Shape != identity.ShapeAbsent || len(id.Orgs.List) > 0 {
		claims = claims.Clone()
		claims[identity.ClaimOrganization] = id.Orgs.Encode(id.Orgs.Shape)
	}
	encoded, err := claims.Encode()
	if err != nil {
		return err
	}
	h.Set(identity.HeaderUserinfo, encoded)
	for _, ch := range c.headers {
		if v, ok := claimValue(id, claims, ch.claim); ok {
			h.Set(ch.header, identity.SanitizeValue(v))
		}
	}
	if id.OrgsSource != "" {
		h.Set(identity.HeaderOrgsSource, id.OrgsSource)
	}
	if c.Assertion == nil {
		return nil
	}
	jws, err := c.sign(id)
	if err != nil {
		return err
	}
	h.Set(c.Assertion.Header, jws)
	return nil
}

func (c *Conf) sign(id *identity.Identity) (string, error) {
	keys := assertion.Current()
	if keys == nil {
		return "", errors.New("userinfo: no assertion signing key loaded")
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	now := time.Now()
	payload := map[string]any{
		"iss":          c.Assertion.Issuer,
		"aud":          c.Assertion.Audience,
		"sub":          id.Subject,
		"iat":          now.Unix(),
		"exp":          now.Add(c.Assertion.TTL.Std()).Unix(),
		"jti":          base64.RawURLEncoding.EncodeToString(nonce[:]),
		"organization": id.Orgs.Encode(identity.ShapeMapAttributes),
	}
	for _, name := range []string{identity.ClaimEmail, identity.ClaimName, identity.ClaimPreferredUsername,
		identity.ClaimGroups, identity.ClaimRoles} {
		if v, ok := id.Claims[name]; ok {
			payload[name] = v
		}
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	metricAssertions.Inc()
	return keys.Sign(body)
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

func (c *Conf) serveJWKS(w http.ResponseWriter, r pkgHTTP.Request) {
	metricRequests.WithLabelValues(outcomeJWKS).Inc()
	if m := r.Method(); m != http.MethodGet && m != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		identity.Refuse(w, http.StatusMethodNotAllowed, reasonMethodNotAllowed, "the key set answers GET")
		return
	}
	keys := assertion.Current()
	if keys == nil {
		identity.Refuse(w, http.StatusServiceUnavailable, ReasonNoSigningKey, "no assertion signing key loaded")
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", headerCacheControlMaxAge)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(keys.JWKS())
}
