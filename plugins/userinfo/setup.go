// Package userinfo is the runner plugin that verifies APISIX's X-Userinfo
// against a signed access token, removes forged identity headers, and passes
// trusted headers and a signed identity assertion upstream.
package userinfo

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/conf"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/inflight"
	_ "github.com/apisix-identity-runner/apisix-identity-runner/internal/runnerlog"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/throttle"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// Name is the plugin name used in APISIX route config.
const Name = "userinfo"

// Values of on_invalid.
const (
	OnInvalidReject    = "reject"
	OnInvalidAnonymous = "anonymous"
)

// Conf is the route config of userinfo, the JSON in the "value" of
// {"name":"userinfo","value":"..."}.
type Conf struct {
	// JWKS turns the route into the assertion key endpoint: GET answers the
	// public keys that verify X-Identity-Assertion. No other key may be set.
	JWKS bool `json:"jwks,omitempty"`
	// BackchannelLogout turns the route into the OpenID Connect back-channel
	// logout endpoint of issuer's client audience: POST with a logout_token
	// revokes the session (or the user's sessions) it names. Only issuer,
	// audience, jwks_uri, leeway and revocation_ttl may be set with it.
	BackchannelLogout bool `json:"backchannel_logout,omitempty"`
	// RevocationTTL is how long a revocation made by the back-channel
	// logout route is kept: as long as a token of the session can still be
	// valid. Default "10h" (Keycloak's default SSO Session Max); between
	// "5m" and "720h". Only with backchannel_logout.
	RevocationTTL conf.Duration `json:"revocation_ttl,omitempty"`
	// OnRevoked is what a request of a revoked session gets when it comes
	// from a browser. Default: none, every such request is refused like any
	// invalid identity (on_invalid).
	OnRevoked *OnRevokedConf `json:"on_revoked,omitempty"`
	// Issuer is the Keycloak realm URL tokens must come from, such as
	// "https://sso.example.org/realms/olapps". Required when verify_token is true.
	Issuer string `json:"issuer,omitempty"`
	// JWKSURI is where the issuer's signing keys are. Default
	// "<issuer>/protocol/openid-connect/certs".
	JWKSURI string `json:"jwks_uri,omitempty"`
	// VerifyToken requires X-Access-Token to be a valid token of issuer whose
	// sub equals X-Userinfo's. Default true. false trusts X-Userinfo as it is:
	// safe only on APISIX 3.17+ with openid-connect on the same route.
	VerifyToken *bool `json:"verify_token,omitempty"`
	// Audience is the client the token must have been issued to: in its aud,
	// or equal to its azp (Keycloak's access tokens name their client in azp).
	// Required when verify_token is true, unless any_audience is true: every
	// client of a realm gets tokens of the same issuer, so without it a token
	// a user gave another application would pass here.
	Audience string `json:"audience,omitempty"`
	// AnyAudience accepts a token issued to any client of issuer. Default
	// false; true only without audience, and only when verify_token is true.
	// It is a key of its own so that no empty or forgotten audience can mean it.
	AnyAudience bool `json:"any_audience,omitempty"`
	// OnInvalid is what a request with an identity that fails verification gets:
	// "reject" (401 with the reason, upstream not called) or "anonymous" (all
	// identity headers removed, request passed on). Default "reject".
	OnInvalid string `json:"on_invalid,omitempty"`
	// RequireUser refuses (401) requests that carry no identity at all.
	// Default false: they pass as anonymous.
	RequireUser bool `json:"require_user,omitempty"`
	// ClaimHeaders maps an upstream header to the claim it carries; lists are
	// joined with ",", organization gives the aliases. Default
	// {"X-User-Id":"sub","X-User-Email":"email","X-User-Orgs":"organization"};
	// {} sets none.
	ClaimHeaders map[string]string `json:"claim_headers,omitempty"`
	// Assertion configures the signed identity assertion. Default: none.
	Assertion *AssertionConf `json:"assertion,omitempty"`
	// Leeway tolerates clock skew when checking token times. Default "30s";
	// between "0s" and "5m" ("0s" is no leeway).
	Leeway conf.Duration `json:"leeway,omitempty"`
	// MaxUserinfoBytes bounds the X-Userinfo header decoded. Default 32768;
	// between 1024 and 1048576.
	MaxUserinfoBytes int `json:"max_userinfo_bytes,omitempty"`

	// given are the keys the config set, to refuse by name the ones a
	// special route (jwks, backchannel_logout) does not take.
	given conf.Keys
	// err is a config error: the route then answers 500 rather than being
	// skipped by the runner (which would let requests through unchecked).
	err      error
	plugin   *Plugin
	verifier *keycloak.TokenVerifier
	strip    *identity.StripRule
	verify   bool
	// route is the emission settings, interned by the emitter: equal configs
	// (the same route prepared again) share it, so what was emitted for a
	// login under one is reused under the other.
	route *emit.Route
}

// AssertionConf configures the signed identity assertion.
type AssertionConf struct {
	// Header carries the assertion. Default "X-Identity-Assertion".
	Header string `json:"header,omitempty"`
	// Audience is the aud of the assertion: the app that is to accept it.
	// Required.
	Audience string `json:"audience"`
	// Issuer is the iss of the assertion. Default "apisix-identity-runner".
	Issuer string `json:"issuer,omitempty"`
	// TTL is how long an assertion is valid (exp - iat). Default "60s";
	// between "1s" and "1h".
	TTL conf.Duration `json:"ttl,omitempty"`
}

// OnRevokedConf sends a browser whose session was revoked to a fresh login.
type OnRevokedConf struct {
	// Redirect is the local path a browser is sent to (302): the route's
	// openid-connect logout_path (openid-connect's default is "/logout"),
	// which destroys APISIX's session cookie and ends at Keycloak, so the
	// next visit logs in afresh rather than looping on a dead session.
	// Required; a path on this host ("/..."), never another site.
	Redirect string `json:"redirect"`
}

// Deps are what userinfo needs from the process; main builds them once and
// tests build them with fakes.
type Deps struct {
	// Verifiers verify access and ID tokens, one per issuer. Required.
	Verifiers *keycloak.Verifiers
	// Emitter renders, signs and writes the identity upstream; main builds
	// one and hands it to orgsync too. Its key ring is published on the JWKS
	// route. nil: New builds one without a signing key (go-runner check),
	// and routes with an assertion answer 500 no_signing_key.
	Emitter *emit.Emitter
	// SessionBytes bounds the logins kept for reuse (0: DefaultSessionBytes).
	SessionBytes int64
	// Revocations are the sessions ended at Keycloak: the back-channel
	// logout route records them, every verified request is checked against
	// them. nil: the back-channel logout route answers 500 misconfigured,
	// and nothing is ever revoked.
	Revocations cache.Revoker
	// Cache remembers a logout token's jti for the fleet (Redis); nil or
	// without Redis the process's own record is the record.
	Cache *cache.Cache
	// Calls counts the calls under way, for main to let them finish on
	// SIGTERM; nil counts nothing.
	Calls *inflight.Counter
	// Tracer records each request as a span joined to APISIX's trace
	// (traceparent), and token verification on a miss as its child. nil
	// (the default): tracing off, no header read for it.
	Tracer trace.Tracer
}

// DefaultSessionBytes is the default budget of proven logins kept for reuse.
const DefaultSessionBytes = 48 << 20

// Plugin is the userinfo plugin: one per process, holding what outlives a
// route config (the runner parses a route's config again each time APISIX
// prepares it).
type Plugin struct {
	plugin.DefaultPlugin
	deps     Deps
	sessions *sessions
	// logoutJTIs are the logout tokens this process accepted.
	logoutJTIs *jtiSet
	// logoutLog bounds the log lines about refused logout tokens.
	logoutLog throttle.Every
}

var _ plugin.Plugin = (*Plugin)(nil)

// New builds the plugin; main registers it with the runner.
func New(d Deps) *Plugin {
	if d.Verifiers == nil {
		d.Verifiers = keycloak.NewVerifiers(0)
	}
	if d.SessionBytes <= 0 {
		d.SessionBytes = DefaultSessionBytes
	}
	if d.Emitter == nil {
		d.Emitter = emit.New(emit.Options{})
	}
	return &Plugin{deps: d, sessions: newSessions(d.SessionBytes), logoutJTIs: newJTISet(maxLogoutJTIs)}
}

func logger() *slog.Logger { return slog.Default().With("plugin", Name) }

// Name is the plugin name.
func (*Plugin) Name() string { return Name }

// ParseConf never returns an error: the runner would skip the plugin and pass
// the route's requests on unchecked. A bad config is kept and refused at
// request time with 500, and logged here, once per route config.
func (p *Plugin) ParseConf(in []byte) (any, error) {
	c, err := p.parse(in)
	if err != nil {
		logger().Error("route config refused; the route answers 500 until it is fixed", "error", err)
		metricConfigErrors.Inc()
		return &Conf{err: err, plugin: p}, nil
	}
	return c, nil
}

func (p *Plugin) parse(in []byte) (*Conf, error) {
	c := &Conf{plugin: p}
	if err := conf.Parse(Name, in, c); err != nil {
		return nil, err
	}
	return c, nil
}

var _ conf.Lifecycle = (*Conf)(nil)

// SetDefaults fills in every key left out; a key given as zero stays zero.
func (c *Conf) SetDefaults(set conf.Keys) {
	c.given = set
	if c.JWKS {
		return
	}
	if c.BackchannelLogout {
		if !set.Has("leeway") {
			c.Leeway = conf.Duration(30 * time.Second)
		}
		if !set.Has("revocation_ttl") {
			c.RevocationTTL = conf.Duration(DefaultRevocationTTL)
		}
		if c.JWKSURI == "" && c.Issuer != "" {
			c.JWKSURI = keycloak.JWKSURL(c.Issuer)
		}
		return
	}
	if c.VerifyToken == nil {
		t := true
		c.VerifyToken = &t
	}
	if c.OnInvalid == "" {
		c.OnInvalid = OnInvalidReject
	}
	if !set.Has("claim_headers") {
		c.ClaimHeaders = map[string]string{
			identity.HeaderUserID:    identity.ClaimSubject,
			identity.HeaderUserEmail: identity.ClaimEmail,
			identity.HeaderUserOrgs:  identity.ClaimOrganization,
		}
	}
	if !set.Has("leeway") {
		c.Leeway = conf.Duration(30 * time.Second)
	}
	if !set.Has("max_userinfo_bytes") {
		c.MaxUserinfoBytes = identity.DefaultMaxUserinfoBytes
	}
	if c.JWKSURI == "" && c.Issuer != "" {
		c.JWKSURI = keycloak.JWKSURL(c.Issuer)
	}
	if a := c.Assertion; a != nil {
		if !set.Has("assertion.header") {
			a.Header = identity.HeaderAssertion
		}
		if !set.Has("assertion.issuer") {
			a.Issuer = "apisix-identity-runner"
		}
		if !set.Has("assertion.ttl") {
			a.TTL = conf.Duration(60 * time.Second)
		}
	}
}

// Validate checks the config without changing it. Every problem is
// reported, joined (go-runner check lists each); a check that reads a value
// already refused is skipped, so no problem is the knock-on of another.
func (c *Conf) Validate() error {
	if c.JWKS {
		if c.BackchannelLogout || c.Issuer != "" || c.JWKSURI != "" || c.VerifyToken != nil || c.Audience != "" || c.AnyAudience ||
			c.OnInvalid != "" || c.RequireUser || c.ClaimHeaders != nil || c.Assertion != nil || c.Leeway != 0 ||
			c.MaxUserinfoBytes != 0 || c.RevocationTTL != 0 || c.OnRevoked != nil {
			return errors.New(`"jwks": true serves the assertion keys and takes no other key`)
		}
		return nil
	}
	if c.BackchannelLogout {
		return c.validateBackchannel()
	}
	var problems []error
	bad := func(err error) { problems = append(problems, err) }
	if c.given.Has("revocation_ttl") {
		bad(errors.New(`"revocation_ttl" is a setting of the "backchannel_logout" route`))
	}
	if c.OnRevoked != nil {
		if !*c.VerifyToken {
			bad(errors.New(`"on_revoked" needs "verify_token": true: only a verified token names its session`))
		}
		if err := checkLocalPath("on_revoked.redirect", c.OnRevoked.Redirect); err != nil {
			bad(err)
		}
	}
	if *c.VerifyToken {
		problems = append(problems, c.validateIssuer(`"issuer" is required when "verify_token" is true`)...)
	}
	if err := c.validateAudience(); err != nil {
		bad(err)
	}
	switch c.OnInvalid {
	case OnInvalidReject, OnInvalidAnonymous:
	default:
		bad(fmt.Errorf(`"on_invalid" %q: want "reject" or "anonymous"`, c.OnInvalid))
	}
	if c.Leeway < 0 || c.Leeway.Std() > 5*time.Minute {
		bad(fmt.Errorf(`"leeway" %q: want between "0s" and "5m"`, c.Leeway))
	}
	if c.MaxUserinfoBytes < 1024 || c.MaxUserinfoBytes > 1<<20 {
		bad(fmt.Errorf(`"max_userinfo_bytes" %d: want between 1024 and 1048576`, c.MaxUserinfoBytes))
	}
	seen := map[string]string{}
	reserved := map[string]bool{}
	for _, n := range append(identity.OIDCHeaders, identity.HeaderOrgsSource) {
		reserved[identity.NormalizeName(n)] = true
	}
	if a := c.Assertion; a != nil {
		if a.Audience == "" {
			bad(errors.New(`"assertion.audience" is required: name the app that accepts the assertion`))
		}
		if a.Issuer == "" {
			bad(errors.New(`"assertion.issuer" is empty`))
		}
		if err := conf.HeaderName("assertion.header", a.Header); err != nil {
			bad(err)
		} else if reserved[identity.NormalizeName(a.Header)] {
			bad(fmt.Errorf(`"assertion.header" %q is an input header`, a.Header))
		} else {
			seen[identity.NormalizeName(a.Header)] = "assertion.header"
		}
		if a.TTL.Std() < time.Second || a.TTL.Std() > time.Hour {
			bad(fmt.Errorf(`"assertion.ttl" %q: want between "1s" and "1h"`, a.TTL))
		}
	}
	if len(c.ClaimHeaders) > maxClaimHeaders {
		bad(fmt.Errorf(`"claim_headers": %d headers, at most %d`, len(c.ClaimHeaders), maxClaimHeaders))
	}
	// In name order: the same config lists its problems alike every time.
	names := make([]string, 0, len(c.ClaimHeaders))
	for header := range c.ClaimHeaders {
		names = append(names, header)
	}
	sort.Strings(names)
	for _, header := range names {
		key := fmt.Sprintf("claim_headers.%s", header)
		nameErr := conf.HeaderName(key, header)
		if nameErr != nil {
			bad(nameErr)
		}
		if c.ClaimHeaders[header] == "" {
			bad(fmt.Errorf("%q: claim name is empty", key))
		}
		if nameErr != nil {
			continue
		}
		norm := identity.NormalizeName(header)
		if reserved[norm] {
			bad(fmt.Errorf("%q: %s is an input header and cannot carry a claim", key, header))
			continue
		}
		if other, dup := seen[norm]; dup {
			bad(fmt.Errorf("%q: same header as %q once case and _/- are folded", key, other))
			continue
		}
		seen[norm] = key
	}
	return errors.Join(problems...)
}

// validateIssuer checks issuer (missing is the problem when it is empty)
// and jwks_uri; a jwks_uri defaulted from a bad issuer is not checked, its
// fault is the issuer's.
func (c *Conf) validateIssuer(missing string) []error {
	var problems []error
	issuerOK := true
	if c.Issuer == "" {
		problems, issuerOK = append(problems, errors.New(missing)), false
	} else if err := checkURL("issuer", c.Issuer); err != nil {
		problems, issuerOK = append(problems, err), false
	}
	if issuerOK || c.given.Has("jwks_uri") {
		if err := checkURL("jwks_uri", c.JWKSURI); err != nil {
			problems = append(problems, err)
		}
	}
	return problems
}

// validateAudience: a token is checked against one client unless the route
// says in a key of its own that any client of the realm will do.
func (c *Conf) validateAudience() error {
	if !*c.VerifyToken {
		if c.Audience != "" || c.AnyAudience {
			return errors.New(`"audience" and "any_audience" need "verify_token": true: without a token there is no client to check`)
		}
		return nil
	}
	switch {
	case c.AnyAudience && c.Audience != "":
		return fmt.Errorf(`"audience" %q and "any_audience": true: give one`, c.Audience)
	case c.AnyAudience:
		return nil
	case c.Audience == "":
		return errors.New(`"audience" is required when "verify_token" is true: name the client whose tokens the route accepts ` +
			`(openid-connect's client_id), or set "any_audience": true to accept a token of any client of the realm`)
	case c.Audience == "*":
		return errors.New(`"audience" "*" is not a wildcard: set "any_audience": true to accept a token of any client of the realm`)
	case strings.TrimSpace(c.Audience) != c.Audience:
		return fmt.Errorf(`"audience" %q: leading or trailing space`, c.Audience)
	}
	return nil
}

// Warnings are what a good config accepts that a reviewer should know about:
// go-runner check prints them without failing.
func (c *Conf) Warnings() []string {
	if c.err != nil || !c.verify || !c.AnyAudience {
		return nil
	}
	return []string{fmt.Sprintf(`"any_audience": true: accepts a token issued to any client of %s`, c.Issuer)}
}

// maxClaimHeaders bounds claim_headers so that every identity header name a
// route watches fits identity.MaxIdentityHeaders.
const maxClaimHeaders = 32

// Derive builds what requests use: the verifier, the strip rule, the headers.
func (c *Conf) Derive() error {
	if c.JWKS {
		return nil
	}
	if c.plugin == nil || c.plugin.sessions == nil {
		return errors.New("userinfo: plugin not built with userinfo.New")
	}
	if c.BackchannelLogout {
		v, err := c.plugin.deps.Verifiers.For(c.Issuer, c.JWKSURI, c.Leeway.Std())
		if err != nil {
			return fmt.Errorf(`"issuer": %w`, err)
		}
		c.verifier = v
		return nil
	}
	c.verify = *c.VerifyToken
	if c.verify {
		v, err := c.plugin.deps.Verifiers.For(c.Issuer, c.JWKSURI, c.Leeway.Std())
		if err != nil {
			return fmt.Errorf(`"issuer": %w`, err)
		}
		c.verifier = v
	}
	// Everything this plugin or orgsync emits is removed first in every
	// spelling, so a client can never hand the upstream a value that looks
	// like ours.
	emitted := append([]string{}, identity.EmittedHeaders...)
	headers := make([]emit.ClaimHeader, 0, len(c.ClaimHeaders))
	for header, claim := range c.ClaimHeaders {
		emitted = append(emitted, header)
		headers = append(headers, emit.ClaimHeader{Header: http.CanonicalHeaderKey(header), Claim: claim})
	}
	sort.Slice(headers, func(i, j int) bool { return headers[i].Header < headers[j].Header })
	var a *emit.Assertion
	if c.Assertion != nil {
		emitted = append(emitted, c.Assertion.Header)
		a = &emit.Assertion{Header: c.Assertion.Header, Audience: c.Assertion.Audience, Issuer: c.Assertion.Issuer,
			TTL: c.Assertion.TTL.Std()}
	}
	c.strip = identity.NewStripRule(emitted...)
	c.route = c.plugin.deps.Emitter.Route(headers, a)
	return nil
}

// backchannelKeys are the keys a back-channel logout route takes.
var backchannelKeys = map[string]bool{"backchannel_logout": true, "issuer": true, "audience": true, "jwks_uri": true,
	"leeway": true, "revocation_ttl": true}

// DefaultRevocationTTL is Keycloak's default SSO Session Max: no token of a
// session outlives it unless the realm raises it (then raise revocation_ttl
// to the realm's SSO Session Max, or its Client Session Max, whichever is
// longer, too).
const DefaultRevocationTTL = 10 * time.Hour

func (c *Conf) validateBackchannel() error {
	var problems []error
	// Each key refused once, in name order (nested keys share their top).
	refused := map[string]bool{}
	var keys []string
	for key := range c.given {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		top, _, _ := strings.Cut(key, ".")
		if !backchannelKeys[top] && !refused[top] {
			refused[top] = true
			problems = append(problems,
				fmt.Errorf(`%q: "backchannel_logout": true takes only issuer, audience, jwks_uri, leeway and revocation_ttl`, top))
		}
	}
	problems = append(problems,
		c.validateIssuer(`"issuer" is required with "backchannel_logout": the realm whose logout tokens the route accepts`)...)
	if c.Audience == "" || c.Audience == "*" || strings.TrimSpace(c.Audience) != c.Audience {
		problems = append(problems, fmt.Errorf(
			`"audience" %q: name the client whose back-channel logout URL this route is (openid-connect's client_id)`, c.Audience))
	}
	if c.Leeway < 0 || c.Leeway.Std() > 5*time.Minute {
		problems = append(problems, fmt.Errorf(`"leeway" %q: want between "0s" and "5m"`, c.Leeway))
	}
	if c.RevocationTTL.Std() < 5*time.Minute || c.RevocationTTL.Std() > 720*time.Hour {
		problems = append(problems, fmt.Errorf(`"revocation_ttl" %q: want between "5m" and "720h"`, c.RevocationTTL))
	}
	return errors.Join(problems...)
}

// checkLocalPath accepts a path on the same host: a redirect elsewhere would
// make the gateway an open redirector.
func checkLocalPath(key, v string) error {
	bad := !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.Contains(v, "\\")
	for i := 0; i < len(v); i++ {
		bad = bad || v[i] <= ' ' || v[i] == 0x7f
	}
	if bad {
		return fmt.Errorf("%q %q: want a path on this host, such as \"/logout\"", key, v)
	}
	return nil
}

func checkURL(key, v string) error {
	if !strings.HasPrefix(v, "https://") && !strings.HasPrefix(v, "http://") {
		return fmt.Errorf("%q %q: want an http(s) URL", key, v)
	}
	return nil
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

// Err is the config error a route answers 500 with, nil when the config is good.
func (c *Conf) Err() error { return c.err }

// RequestFilter runs the plugin; see userinfo.go.
func (p *Plugin) RequestFilter(v any, w http.ResponseWriter, r pkgHTTP.Request) {
	defer p.deps.Calls.Begin()()
	c, ok := v.(*Conf)
	if !ok || c == nil {
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
		return
	}
	c.serve(w, r)
}
