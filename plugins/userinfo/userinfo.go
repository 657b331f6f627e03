package userinfo

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tracing"
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
	ReasonDuplicateHeader   = "duplicate_identity_header"
	// ReasonSessionRevoked: the token's session ended at Keycloak.
	ReasonSessionRevoked = "session_revoked"
	// apisixHeaderLimit is how many request headers APISIX's ext-plugin hands
	// the runner (ngx.req.get_headers() default).
	apisixHeaderLimit        = 100
	reasonMethodNotAllowed   = "method_not_allowed"
	verifyTimeout            = 5 * time.Second
	headerCacheControlMaxAge = "public, max-age=300"
)

// refusal is why a request's identity failed.
type refusal struct {
	status int
	reason string
	detail string
}

func (c *Conf) serve(w http.ResponseWriter, r pkgHTTP.Request) {
	ctx := r.Context()
	if t := c.plugin.deps.Tracer; t != nil {
		var span trace.Span
		ctx, span = tracing.Request(ctx, t, Name, r.Header())
		defer span.End()
	}
	if c.err != nil {
		countMisconfigured.Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
		return
	}
	if c.JWKS {
		c.serveJWKS(w, r)
		return
	}
	if c.BackchannelLogout {
		c.serveBackchannel(w, r)
		return
	}
	h := r.Header()
	// One walk counts, checks and strips: the deletions of a request
	// refused below are never sent (a refusal is the whole answer).
	values, repeated, _ := c.strip.ScanStripRequest(r)
	if values >= apisixHeaderLimit {
		// APISIX shows the runner only the first 100 headers but passes all
		// of them upstream: a forged X_Userinfo placed after the hundredth
		// could not be seen, so could not be removed.
		c.reject(w, r, refusal{status: http.StatusRequestHeaderFieldsTooLarge, reason: ReasonTooManyHeaders})
		return
	}
	if repeated != "" {
		// An upstream may read any of the values, or all of them joined.
		c.reject(w, r, refusal{status: http.StatusBadRequest, reason: ReasonDuplicateHeader, detail: repeated})
		return
	}

	// Views of the request frame: establish copies what it keeps.
	userinfo := identity.HeaderBytes(r, identity.HeaderUserinfo)
	token := identity.HeaderBytes(r, identity.HeaderAccessToken)
	if len(userinfo) == 0 && len(token) == 0 {
		c.anonymous(w, r, refusal{status: http.StatusUnauthorized, reason: ReasonNoIdentity})
		return
	}
	// One clock read for the request's hit path: the session cache, the
	// rendering reuse here and in orgsync (through the proof).
	s, ref, now := c.establish(ctx, time.Now(), userinfo, token, identity.HeaderBytes(r, identity.KeyRawIDToken))
	if ref != nil && ref.reason == ReasonSessionRevoked && c.OnRevoked != nil && fromBrowser(h, len(userinfo) > 0) {
		countRejected.Inc()
		countFailure(ref.reason)
		w.Header().Set("Location", c.OnRevoked.Redirect)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusFound)
		return
	}
	if ref != nil {
		if c.OnInvalid == OnInvalidReject || c.RequireUser {
			c.reject(w, r, *ref)
			return
		}
		countFailure(ref.reason)
		c.anonymous(w, r, *ref)
		return
	}
	// The strip rule removed the "_" spellings; the hyphenated ones are
	// openid-connect's, or a client's where openid-connect did not overwrite
	// them. A refresh token cannot be verified outside Keycloak, so it never
	// passes; the ID token headers pass only as a verified X-Raw-ID-Token
	// proves them.
	identity.DelCanonical(h, identity.HeaderRefreshToken)
	if s.idToken == "" {
		identity.DelCanonical(h, identity.KeyIDToken)
		identity.DelCanonical(h, identity.KeyRawIDToken)
	} else {
		identity.SetCanonical(h, identity.KeyIDToken, s.idToken)
	}
	if err := emit.Attach(r, emit.Proof{Identity: s.id, Route: c.route, At: now}); err != nil {
		countMisconfigured.Inc()
		logger().Error("cannot hand the identity to the next plugin", "error", err)
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
		return
	}
	if err := c.plugin.deps.Emitter.Emit(h, s.id, c.route, emit.Refresh{Now: now}); err != nil {
		countMisconfigured.Inc()
		logger().Error("cannot emit the identity", "error", err)
		identity.Refuse(w, http.StatusInternalServerError, ReasonNoSigningKey)
		return
	}
	countVerified.Inc()
}

// reject answers the client with the reason; the detail goes to the debug log.
func (c *Conf) reject(w http.ResponseWriter, r pkgHTTP.Request, ref refusal) {
	countRejected.Inc()
	countFailure(ref.reason)
	if slog.Default().Enabled(r.Context(), slog.LevelDebug) {
		logger().Debug("identity refused", "reason", ref.reason, "detail", ref.detail)
	}
	identity.Refuse(w, ref.status, ref.reason)
}

// anonymous lets the request through with no identity at all, unless the
// route requires a user.
func (c *Conf) anonymous(w http.ResponseWriter, r pkgHTTP.Request, why refusal) {
	if c.RequireUser {
		if why.reason == "" {
			why.reason = ReasonNoIdentity
		}
		why.status = http.StatusUnauthorized
		c.reject(w, r, why)
		return
	}
	countAnonymous.Inc()
	identity.DeleteAllSpellingsOf(r, identity.OIDCHeaders...)
}

// establish proves the identity: X-Userinfo decoded, the token verified, both
// naming the same user; and checks the ID token. The result is reused for
// the same headers until the token expires. now is the request's time; the
// time returned is now, or the clock read again after a verification, which
// may have waited on Keycloak.
func (c *Conf) establish(ctx context.Context, now time.Time, userinfo, token, rawIDToken []byte) (*session, *refusal, time.Time) {
	if len(userinfo) > c.MaxUserinfoBytes {
		return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMalformedUserinfo, detail: "X-Userinfo too large"}, now
	}
	if !c.verify {
		s, ref := c.trustUserinfo(string(userinfo))
		return s, ref, now
	}
	if len(token) == 0 {
		return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMissingToken,
			detail: "X-Userinfo without X-Access-Token cannot be verified"}, now
	}
	sessions := c.plugin.sessions
	key := sessions.key(c.verifier, c.Audience, userinfo, token, rawIDToken)
	if s := sessions.get(key, userinfo, token, rawIDToken, now); s != nil {
		if c.revoked(s.id.Issuer(), s.sessionID, s.id.Subject(), s.issuedAt) {
			sessions.cache.Remove(key)
			return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonSessionRevoked}, now
		}
		return s, nil, now
	}
	// The session keeps copies: the views die with the request.
	s, ref := c.prove(ctx, key, string(userinfo), string(token), string(rawIDToken))
	return s, ref, time.Now()
}

// prove is establish past a cache miss.
func (c *Conf) prove(ctx context.Context, key sessionKey, userinfo, token, rawIDToken string) (*session, *refusal) {
	var claims identity.Claims
	if userinfo != "" {
		var err error
		if claims, err = identity.DecodeUserinfo(userinfo, c.MaxUserinfoBytes); err != nil {
			return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMalformedUserinfo, detail: err.Error()}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	vctx, span := tracing.Start(ctx, c.plugin.deps.Tracer, "userinfo verify token")
	tok, err := c.verifier.Verify(vctx, token, c.Audience)
	tracing.End(span, err, "token not verified")
	if err != nil {
		return nil, tokenRefusal(err)
	}
	if c.revoked(tok.Issuer, tok.SessionID, tok.Subject, tok.IssuedAt) {
		return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonSessionRevoked}
	}
	id, ref := bindToToken(claims, tok, c.plugin.deps.Emitter.NewLogin())
	if ref != nil {
		return nil, ref
	}
	s := &session{userinfo: userinfo, token: token, rawIDToken: rawIDToken, id: id, sessionID: tok.SessionID, issuedAt: tok.IssuedAt,
		expires: tok.Expiry.Add(c.Leeway.Std()), idToken: c.checkIDToken(ctx, rawIDToken, tok)}
	c.plugin.sessions.put(key, s)
	return s, nil
}

// revoked asks the process's copy of the fleet's revocations (no I/O): the
// session ended at Keycloak, or the user was signed out of every session
// after the token was issued. A token without iat counts as issued before
// any sign-out.
func (c *Conf) revoked(issuer, sid, sub string, iat time.Time) bool {
	r := c.plugin.deps.Revocations
	return r != nil && r.Revoked(issuer, sid, sub, iat)
}

// fromBrowser tells a browser's navigation, which on_revoked sends to a fresh
// login, from an API client, which gets the 401: a request with a token and
// no X-Userinfo is a bearer call (openid-connect's browser sessions send
// both); Accept naming JSON, X-Requested-With, or a Sec-Fetch-Mode other than
// navigate are a script's calls, for which a redirect to a login page is no
// answer.
func fromBrowser(h pkgHTTP.Header, userinfo bool) bool {
	if !userinfo {
		return false
	}
	if strings.Contains(strings.ToLower(h.Get("Accept")), "application/json") || h.Get("X-Requested-With") != "" {
		return false
	}
	if m := h.Get("Sec-Fetch-Mode"); m != "" && !strings.EqualFold(m, "navigate") {
		return false
	}
	return true
}

// trustUserinfo is verify_token false: X-Userinfo as sent, nothing cached
// (orgsync refuses such identities). X-ID-Token cannot be checked without a
// verifier, so it is removed; X-Raw-ID-Token is signed and left to the app.
func (c *Conf) trustUserinfo(userinfo string) (*session, *refusal) {
	if userinfo == "" {
		return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMissingUserinfo,
			detail: "verify_token is false and there is no X-Userinfo"}
	}
	claims, err := identity.DecodeUserinfo(userinfo, c.MaxUserinfoBytes)
	if err != nil {
		return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonMalformedUserinfo, detail: err.Error()}
	}
	if claims.Subject() == "" {
		return nil, &refusal{status: http.StatusUnauthorized, reason: ReasonNoSubject}
	}
	// Login 0: nothing proven here is kept, so no rendering is kept for it
	// either.
	id, ref := newIdentity(0, claims, "", false)
	if ref != nil {
		return nil, ref
	}
	return &session{userinfo: userinfo, id: id}, nil
}

func tokenRefusal(err error) *refusal {
	var te *keycloak.TokenError
	if errors.As(err, &te) {
		status := http.StatusUnauthorized
		if te.Reason == keycloak.ReasonKeysUnavailable {
			status = http.StatusServiceUnavailable
		}
		return &refusal{status: status, reason: te.Reason, detail: te.Detail}
	}
	return &refusal{status: http.StatusUnauthorized, reason: "token_invalid"}
}

// bindToToken checks that X-Userinfo (when sent) names the token's user and
// builds the identity from the verified token alone: its claims, less the
// ones that only describe the token itself. X-Userinfo is checked, never
// used: a client that can write it could otherwise add claims (an email the
// token lacks) or, by sending fewer, hide the ones it does carry (a role, a
// group, an organization) from every trusted output.
func bindToToken(claims identity.Claims, tok *keycloak.Token, login identity.Login) (identity.Identity, *refusal) {
	if claims != nil {
		if sub := claims.Subject(); sub != tok.Subject {
			if sub == "" {
				return identity.Identity{}, &refusal{status: http.StatusUnauthorized, reason: ReasonNoSubject}
			}
			return identity.Identity{}, &refusal{status: http.StatusUnauthorized, reason: ReasonSubjectMismatch,
				detail: "X-Userinfo names another user than the access token"}
		}
	}
	trusted := make(identity.Claims, len(tok.Claims))
	for name, v := range tok.Claims {
		if _, mechanics := tokenMechanicsClaims[name]; !mechanics {
			trusted[name] = v
		}
	}
	if err := trusted.Validate(); err != nil {
		return identity.Identity{}, &refusal{status: http.StatusUnauthorized, reason: ReasonMalformedUserinfo, detail: err.Error()}
	}
	return newIdentity(login, trusted, tok.Issuer, true)
}

// tokenMechanicsClaims describe the access token rather than the user (its
// times, audience, session and client): they stay out of the rewritten
// X-Userinfo, which describes the user as Keycloak's userinfo does.
var tokenMechanicsClaims = map[string]struct{}{
	"exp": {}, "iat": {}, "nbf": {}, "auth_time": {}, "jti": {}, "iss": {}, "aud": {}, "typ": {}, "azp": {},
	"sid": {}, "session_state": {}, "nonce": {}, "acr": {}, "amr": {}, "at_hash": {}, "c_hash": {},
	"allowed-origins": {}, "scope": {}, "client_id": {},
}

func newIdentity(login identity.Login, claims identity.Claims, issuer string, verified bool) (identity.Identity, *refusal) {
	id, err := identity.New(login, claims, issuer, verified)
	if err != nil {
		return identity.Identity{}, &refusal{status: http.StatusUnauthorized, reason: ReasonMalformedUserinfo, detail: err.Error()}
	}
	return id, nil
}

// checkIDToken decides what X-ID-Token the upstream gets. openid-connect's
// X-ID-Token is unsigned base64 JSON, so a client reaching us without
// openid-connect overwriting it could write any claims there; only a verified
// X-Raw-ID-Token (APISIX 3.18, set_raw_id_token_header) proves an ID token.
// It must be signed by the issuer, of typ ID, issued to the client the access
// token was issued to, and name the same user. Then X-ID-Token is rewritten
// from its verified claims; otherwise both headers are removed ("").
func (c *Conf) checkIDToken(ctx context.Context, rawIDToken string, access *keycloak.Token) string {
	if rawIDToken == "" {
		return ""
	}
	tok, err := c.verifier.VerifyID(ctx, rawIDToken, access.AuthorizedParty)
	if err != nil || tok.Subject != access.Subject {
		countFailure("id_token_invalid")
		return ""
	}
	encoded, err := identity.Claims(tok.Claims).MarshalJSON()
	if err != nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(encoded)
}

func (c *Conf) serveJWKS(w http.ResponseWriter, r pkgHTTP.Request) {
	countJWKS.Inc()
	if m := r.Method(); m != http.MethodGet && m != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		identity.Refuse(w, http.StatusMethodNotAllowed, reasonMethodNotAllowed)
		return
	}
	keys := c.plugin.deps.Emitter.Keys()
	if keys == nil {
		identity.Refuse(w, http.StatusServiceUnavailable, ReasonNoSigningKey)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", headerCacheControlMaxAge)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(keys.JWKS())
}
