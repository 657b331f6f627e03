package userinfo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// Reasons the back-channel logout endpoint refuses a call, besides the
// logout token's token_* reasons. They go in error_description.
const (
	reasonLogoutBody     = "body_invalid"
	reasonLogoutReplayed = "token_replayed"
	reasonLogoutStore    = "revocation_failed"
)

// maxLogoutBodyBytes bounds the form: a logout token is about 1 KB (an
// RSA-4096 signature is 683 characters of it), so 8 KiB leaves room for
// any realm key and refuses anything else before it is read.
const maxLogoutBodyBytes = 8 << 10

// maxLogoutJTIs bounds the process's record of accepted logout tokens. Only
// a token signed by the realm gets in, each stays MaxLogoutTokenAge plus the
// leeway: 100 000 is over 300 logouts a second, sustained.
const maxLogoutJTIs = 100_000

// logoutTimeout bounds the call's work: key fetch, the fleet's jti record,
// the revocation.
const logoutTimeout = 5 * time.Second

// serveBackchannel is the OpenID Connect Back-Channel Logout 1.0 endpoint
// (2.5, 2.8): a POSTed form with one logout_token; 200 when the session is
// revoked, 400 with a JSON error otherwise, never cached. The order is the
// cost: the shape of the request, then the signature, and only a token the
// realm signed is remembered (its jti) or acted upon, so a flood of forged
// tokens stores nothing.
func (c *Conf) serveBackchannel(w http.ResponseWriter, r pkgHTTP.Request) {
	countBackchannel.Inc()
	w.Header().Set("Cache-Control", "no-store")
	if r.Method() != http.MethodPost {
		w.Header().Set("Allow", "POST")
		logoutError(w, http.StatusMethodNotAllowed, reasonMethodNotAllowed)
		return
	}
	if c.plugin.deps.Revocations == nil {
		logoutError(w, http.StatusInternalServerError, ReasonMisconfigured)
		return
	}
	raw, reason := logoutTokenOf(r)
	if reason != "" {
		logoutError(w, http.StatusBadRequest, reason)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), logoutTimeout)
	defer cancel()
	tok, err := c.verifier.VerifyLogout(ctx, raw, c.Audience)
	if err != nil {
		reason := "token_invalid"
		var te *keycloak.TokenError
		if errors.As(err, &te) {
			reason = te.Reason
		}
		c.plugin.logLogout("logout token refused (logged at most once a minute; see the metric)", "reason", reason)
		logoutError(w, http.StatusBadRequest, reason)
		return
	}
	now := time.Now()
	if !c.plugin.claimLogoutJTI(ctx, tok, now) {
		logoutError(w, http.StatusBadRequest, reasonLogoutReplayed)
		return
	}
	rev := cache.Revocation{Issuer: tok.Issuer, SessionID: tok.SessionID, Subject: tok.Subject, At: tok.IssuedAt,
		Until: now.Add(c.RevocationTTL.Std())}
	// The 200 waits until every runner of the fleet holds the revocation:
	// from Keycloak's answer on, none serves the session.
	if err := c.plugin.deps.Revocations.Revoke(cache.AwaitPeers(ctx), rev); err != nil {
		// Said to Keycloak as the specification asks (400: the logout
		// failed); the jti stays recorded, as the token was genuine.
		logger().Warn("back-channel logout: the revocation could not be stored", "error", err)
		logoutError(w, http.StatusBadRequest, reasonLogoutStore)
		return
	}
	metricLogouts.Inc()
	w.WriteHeader(http.StatusOK)
}

// logoutTokenOf reads the form: Content-Length first (nothing is read from
// APISIX beyond maxLogoutBodyBytes, and a body without a length is not read
// at all), then exactly one logout_token.
func logoutTokenOf(r pkgHTTP.Request) (string, string) {
	h := r.Header().View()
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" || len(h.Values("Content-Type")) != 1 {
		return "", reasonLogoutBody
	}
	lengths := h.Values("Content-Length")
	if len(h.Values("Transfer-Encoding")) > 0 || len(lengths) != 1 {
		return "", reasonLogoutBody
	}
	n, err := strconv.ParseUint(strings.TrimSpace(lengths[0]), 10, 32)
	if err != nil || n > maxLogoutBodyBytes {
		return "", reasonLogoutBody
	}
	body, err := r.Body()
	if err != nil || len(body) > maxLogoutBodyBytes {
		return "", reasonLogoutBody
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", reasonLogoutBody
	}
	// Two tokens are refused, not one picked: a sender that means one
	// sends one.
	if v := form["logout_token"]; len(v) != 1 || v[0] == "" {
		return "", reasonLogoutBody
	}
	return form["logout_token"][0], ""
}

// logoutError is the specification's error answer: a JSON object with
// error and error_description (the reason, never token content).
func logoutError(w http.ResponseWriter, status int, reason string) {
	countFailure(reason)
	body, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{Error: "invalid_request", Description: reason})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (p *Plugin) logLogout(msg string, args ...any) {
	if p.logoutLog.Allow(time.Now(), time.Minute) {
		logger().Warn(msg, args...)
	}
}

// claimLogoutJTI records tok's jti until the token could no longer be
// accepted, in this process and, with Redis, for the fleet; false when it
// was recorded already (a replay).
//
// When the process's record is full or Redis cannot answer, the token is
// still accepted: a replayed logout token can only revoke again a session
// that already ended, while refusing a genuine one would leave a session
// alive that the user ended (Keycloak does not send it again).
func (p *Plugin) claimLogoutJTI(ctx context.Context, tok *keycloak.LogoutToken, now time.Time) bool {
	// The issuer is part of the name: jti values are unique per issuer only.
	sum := sha256.Sum256([]byte(tok.Issuer + "\x00" + tok.JTI))
	switch p.logoutJTIs.claim(sum, tok.Until, now) {
	case claimSeen:
		return false
	case claimFull:
		p.logLogout("back-channel logout: the record of logout tokens is full; a replay is not refused")
	}
	if p.deps.Cache == nil {
		return true
	}
	ttl := tok.Until.Sub(now)
	if ttl < time.Second {
		ttl = time.Second
	}
	_, first, err := p.deps.Cache.ClaimOnce(ctx, "userinfo:logout:"+hex.EncodeToString(sum[:]), ttl)
	switch {
	case errors.Is(err, cache.ErrNoRedis):
		return true
	case err != nil:
		p.logLogout("back-channel logout: Redis cannot say whether another runner saw the token; accepted", "error", err)
		return true
	}
	return first
}

type claimOutcome int

const (
	claimNew claimOutcome = iota
	claimSeen
	claimFull
)

// jtiSet is the process's record of accepted logout tokens (by a digest of
// issuer and jti), bounded in entries; entries leave when their token could
// no longer be accepted.
type jtiSet struct {
	mu    sync.Mutex
	max   int
	until map[[sha256.Size]byte]time.Time
	swept time.Time
}

func newJTISet(max int) *jtiSet {
	return &jtiSet{max: max, until: map[[sha256.Size]byte]time.Time{}}
}

func (s *jtiSet) claim(k [sha256.Size]byte, until, now time.Time) claimOutcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	if since := now.Sub(s.swept); since >= time.Second || (len(s.until) >= s.max && since >= 100*time.Millisecond) {
		s.swept = now
		for m, u := range s.until {
			if now.After(u) {
				delete(s.until, m)
			}
		}
	}
	if u, ok := s.until[k]; ok && !now.After(u) {
		return claimSeen
	}
	if len(s.until) >= s.max {
		return claimFull
	}
	s.until[k] = until
	return claimNew
}

func (s *jtiSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.until)
}
