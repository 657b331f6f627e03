// Package orgsync is the runner plugin that replaces the organization claim
// APISIX froze in the session at login with the user's current organizations
// from Keycloak's admin API, through the shared two-tier cache.
package orgsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/access"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/conf"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/inflight"
	_ "github.com/apisix-identity-runner/apisix-identity-runner/internal/runnerlog"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/throttle"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// Name is the plugin name used in APISIX route config.
const Name = "orgsync"

// Values of shape.
const (
	ShapeAuto          = "auto"
	ShapeList          = "list"
	ShapeMap           = "map"
	ShapeMapAttributes = "map_attributes"
)

// Values of on_keycloak_error.
const (
	OnErrorStale = "stale"
	OnErrorDeny  = "deny"
)

// Claims orgsync can refresh.
const (
	ClaimOrganization = "organization"
	ClaimGroups       = "groups"
	ClaimRoles        = "roles"
	// ClaimOrganizationGroups adds to each organization of the claim the
	// user's groups there (Keycloak 26.6+), as the organization-group
	// membership mapper writes them: organization.<alias>.groups.
	ClaimOrganizationGroups = "organization_groups"
	// ClaimClientRoles refreshes resource_access: the effective client roles
	// by client id.
	ClaimClientRoles = "client_roles"
)

// Conf is the route config of orgsync, the JSON in the "value" of
// {"name":"orgsync","value":"..."}. orgsync must follow userinfo in the same
// ext-plugin-post-req list.
type Conf struct {
	// FreshTTL is how long a user's organizations are served from the cache
	// without asking Keycloak. Default "30s"; between "1s" and "24h".
	FreshTTL conf.Duration `json:"fresh_ttl,omitempty"`
	// StaleTTL is how long past fetching a cached list is still served while
	// a background refresh runs; past it the request waits for Keycloak.
	// Default "10m"; must be >= fresh_ttl and <= "24h".
	StaleTTL conf.Duration `json:"stale_ttl,omitempty"`
	// Shape of the rewritten organization claim: "auto" (the shape the request
	// already had; the map shape when it had none), "list", "map" or
	// "map_attributes". Default "auto".
	Shape string `json:"shape,omitempty"`
	// OnKeycloakError is what happens when Keycloak is down or slow and
	// nothing fresh is cached: "stale" serves the last known list, else the
	// token's own claim, and says so in X-User-Orgs-Source; "deny" answers 503.
	// Default "stale".
	OnKeycloakError string `json:"on_keycloak_error,omitempty"`
	// CheckAccount refuses (401) users Keycloak no longer knows or has
	// disabled. Default true.
	CheckAccount *bool `json:"check_account,omitempty"`
	// Claims to refresh: "organization", "groups" (group paths), "roles"
	// (realm roles, written to realm_access.roles), "organization_groups"
	// (each organization's groups the user is in, Keycloak 26.6+, written to
	// organization.<alias>.groups; needs an explicit shape) and "client_roles"
	// (written to resource_access.<client>.roles). Default ["organization"].
	Claims []string `json:"claims,omitempty"`
	// Timeout bounds how long a request waits for Keycloak (and for another
	// gateway filling the cache). Default "2s"; between "100ms" and "30s".
	Timeout conf.Duration `json:"timeout,omitempty"`
	// Invalidate turns the route into the invalidation endpoint: POST of
	// {"user_ids":[...]}, {"organization_id":"..."} or a keycloak-events
	// webhook payload, signed with HMAC-SHA256. No cache keys may be set with it.
	Invalidate bool `json:"invalidate,omitempty"`
	// SecretEnv names the environment variable holding the HMAC secret of the
	// invalidation endpoint (list it in nginx_config.envs). Required with invalidate.
	SecretEnv string `json:"secret_env,omitempty"`
	// SignatureHeader carries the hex HMAC-SHA256 of the body, optionally
	// prefixed "sha256=". Default "X-Keycloak-Signature", as keycloak-events sends it.
	SignatureHeader string `json:"signature_header,omitempty"`
	// MaxAge is how old a signed invalidation may be: its time (the body's
	// "time" in epoch milliseconds, as keycloak-events sends it) must be
	// within max_age of now. A body accepted once is refused again, on any
	// invalidation route and (with Redis) by any runner, until an hour past
	// max_age's upper bound. Default "5m"; between "10s" and "1h".
	MaxAge conf.Duration `json:"max_age,omitempty"`
	// RateLimit is how many invalidation calls per second the route accepts
	// (bursts of twice that); more get 429. Only calls correctly signed,
	// fresh and not seen before count. Default 10.
	RateLimit int `json:"rate_limit,omitempty"`
	// Require is the route's access rule, decided on every request on the
	// user's current data (what the upstream receives), never on the
	// login's claims: see "Access rules" in the README. Default none.
	Require *access.Rule `json:"require,omitempty"`
	// Tenant says where a request names its organization (a path segment,
	// the host, or a header the gateway sets); that organization must be one
	// of the user's current ones. Default none.
	Tenant *access.Tenant `json:"tenant,omitempty"`

	err          error
	policy       *access.Policy
	plugin       *Plugin
	shape        identity.Shape
	checkAccount bool
	groups       bool
	roles        bool
	orgGroups    bool
	clientRoles  bool
	secret       []byte
	// settings spell the settings that shape the output (the shape written,
	// indexed by identity.Shape, and the claims) for the emitter: equal
	// configs spell them alike, so a login's rendering is reused across them.
	settings [identity.ShapeEmptyObject + 1]string
	// limiter bounds the invalidation route's calls.
	limiter *rateLimiter
}

// Store is the two-tier cache as orgsync uses it (*cache.Cache).
type Store interface {
	Get(ctx context.Context, key string, p cache.Policy, load func(ctx context.Context) ([]byte, error)) (cache.Result, error)
	PeekRemote(ctx context.Context, key string) (cache.Entry, error)
	SetRemote(ctx context.Context, key string, value []byte) error
	Invalidate(ctx context.Context, keys ...string) error
	AppendFeed(ctx context.Context, stream string, maxLen int64, fields map[string]string) error
	FeedKey(stream string) string
	AcquireLease(ctx context.Context, name string, ttl time.Duration) (*cache.Lease, bool, error)
	ClaimOnce(ctx context.Context, name string, ttl time.Duration) (*cache.Claim, bool, error)
	GetState(ctx context.Context, name string) (string, error)
	SetState(ctx context.Context, name, value string) error
}

// Directory is Keycloak's admin API as orgsync uses it (*keycloak.Client).
type Directory interface {
	Realm() string
	// Issuer is the realm's issuer as its tokens carry it.
	Issuer() string
	User(ctx context.Context, userID string) (*keycloak.User, error)
	UserOrganizations(ctx context.Context, userID string) ([]keycloak.Organization, error)
	UserGroups(ctx context.Context, userID string) ([]string, error)
	UserRealmRoles(ctx context.Context, userID string) ([]string, error)
	UserClientRoles(ctx context.Context, userID string) (map[string][]string, error)
	OrganizationMemberGroups(ctx context.Context, orgID, userID string) ([]string, error)
	OrganizationGroupsSupported(ctx context.Context) (bool, error)
	UserIDByUsername(ctx context.Context, username string) (string, error)
	OrganizationMemberIDs(ctx context.Context, orgID string) ([]string, error)
	OrganizationMemberPage(ctx context.Context, orgID string, first int) (ids []string, more bool, err error)
	AdminEvents(ctx context.Context, q keycloak.AdminEventQuery) ([]keycloak.AdminEvent, error)
}

var (
	_ Store     = (*cache.Cache)(nil)
	_ Directory = (*keycloak.Client)(nil)
)

// Deps are the process-wide clients orgsync uses; main builds them once and
// tests build them with fakes.
type Deps struct {
	Cache    Store
	Keycloak Directory
	// Emitter writes the refreshed identity upstream: the one userinfo
	// emits with, built in main. Without it every orgsync route with a
	// user answers 500.
	Emitter *emit.Emitter
	// Feed signs the change feed's entries (main: the assertion key ring). Without it entries are
	// written unsigned, and the feed's verifying readers skip them.
	Feed FeedSigner
	// Revocations receives the sessions the admin-event watcher sees end (an admin's sign-out of a
	// user, the deletion of one session, a user disabled or deleted). Nil: the watcher revokes
	// nothing, and those sessions end at the gateway only when their tokens do.
	Revocations cache.Revoker
	// Calls counts the calls under way, for main to let them finish on
	// SIGTERM; nil counts nothing.
	Calls *inflight.Counter
	// RevocationLifetime is how long a revocation made by the watcher is kept: as long as a token of
	// a session that ended can still be presented. Default DefaultRevocationLifetime (10 h, Keycloak's
	// default SSO Session Max); set it to the realm's SSO Session Max (or its offline session
	// maximum, if the gateway accepts offline tokens) when that is longer.
	RevocationLifetime time.Duration
	// Tracer records each request as a span joined to APISIX's trace
	// (traceparent); the cache and Keycloak spans of a miss are its
	// descendants. nil (the default): tracing off, no header read for it.
	Tracer trace.Tracer
}

// Plugin is the orgsync plugin.
type Plugin struct {
	plugin.DefaultPlugin
	deps Deps
	// snapshots keeps the cached values requests read, parsed.
	snapshots *snapshots
	// The log lines of the request path, each at most once a minute: a
	// refused invalidation signature, a replay check that could not be
	// made, a route called without a Keycloak client.
	badSignatureLog, replayCheckLog, noKeycloakLog throttle.Every
	// replays records the invalidation calls accepted, for every route and
	// config of the process: a route's config is rebuilt whenever APISIX
	// sends it again.
	replays *replaySet
}

var _ plugin.Plugin = (*Plugin)(nil)

// New builds the plugin; main registers it with the runner. Without a
// Keycloak client (no KEYCLOAK_URL) every orgsync route answers 500: orgsync
// cannot do its job and must not pretend to.
func New(d Deps) *Plugin {
	return &Plugin{deps: d, snapshots: newSnapshots(snapshotBytes), replays: newReplaySet(maxReplayEntries)}
}

func logger() *slog.Logger { return slog.Default().With("plugin", Name) }

// Name is the plugin name.
func (*Plugin) Name() string { return Name }

// ParseConf never returns an error (the runner would skip the plugin): a bad
// config is kept, logged once, and answered with 500 on every request.
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

// SetDefaults fills in every key left out; a key given as zero or "" stays
// so, for Validate to refuse.
func (c *Conf) SetDefaults(set conf.Keys) {
	if c.Invalidate {
		if !set.Has("signature_header") {
			c.SignatureHeader = "X-Keycloak-Signature"
		}
		if !set.Has("max_age") {
			c.MaxAge = conf.Duration(5 * time.Minute)
		}
		if !set.Has("rate_limit") {
			c.RateLimit = 10
		}
		return
	}
	if !set.Has("fresh_ttl") {
		c.FreshTTL = conf.Duration(30 * time.Second)
	}
	if !set.Has("stale_ttl") {
		c.StaleTTL = conf.Duration(10 * time.Minute)
	}
	if !set.Has("shape") {
		c.Shape = ShapeAuto
	}
	if !set.Has("on_keycloak_error") {
		c.OnKeycloakError = OnErrorStale
	}
	if c.CheckAccount == nil {
		t := true
		c.CheckAccount = &t
	}
	if !set.Has("claims") {
		c.Claims = []string{ClaimOrganization}
	}
	if !set.Has("timeout") {
		c.Timeout = conf.Duration(2 * time.Second)
	}
}

// Validate checks the config without changing it. Every problem is
// reported, joined (go-runner check lists each); a check that reads a value
// already refused is skipped, so no problem is the knock-on of another.
func (c *Conf) Validate() error {
	var problems []error
	bad := func(err error) { problems = append(problems, err) }
	if c.Invalidate {
		if c.FreshTTL != 0 || c.StaleTTL != 0 || c.Shape != "" || c.OnKeycloakError != "" || c.CheckAccount != nil ||
			c.Claims != nil || c.Timeout != 0 || c.Require != nil || c.Tenant != nil {
			bad(errors.New(`"invalidate": true takes only "secret_env", "signature_header", "max_age" and "rate_limit"`))
		}
		if c.SecretEnv == "" {
			bad(errors.New(`"secret_env" is required with "invalidate": name the environment variable holding the HMAC secret`))
		}
		if err := conf.HeaderName("signature_header", c.SignatureHeader); err != nil {
			bad(err)
		}
		if c.MaxAge.Std() < 10*time.Second || c.MaxAge.Std() > maxMaxAge {
			bad(fmt.Errorf(`"max_age" %q: want between "10s" and "1h"`, c.MaxAge))
		}
		if c.RateLimit < 1 || c.RateLimit > 10000 {
			bad(fmt.Errorf(`"rate_limit" %d: want between 1 and 10000 calls per second`, c.RateLimit))
		}
		return errors.Join(problems...)
	}
	if c.SecretEnv != "" || c.SignatureHeader != "" || c.MaxAge != 0 || c.RateLimit != 0 {
		bad(errors.New(`"secret_env", "signature_header", "max_age" and "rate_limit" go with "invalidate": true only`))
	}
	freshOK := c.FreshTTL.Std() >= time.Second && c.FreshTTL.Std() <= 24*time.Hour
	if !freshOK {
		bad(fmt.Errorf(`"fresh_ttl" %q: want between "1s" and "24h"`, c.FreshTTL))
	}
	if freshOK && c.StaleTTL < c.FreshTTL {
		bad(fmt.Errorf(`"stale_ttl" %q must be >= "fresh_ttl" %q`, c.StaleTTL, c.FreshTTL))
	}
	if c.StaleTTL.Std() > 24*time.Hour {
		bad(fmt.Errorf(`"stale_ttl" %q: want at most "24h"`, c.StaleTTL))
	}
	switch c.Shape {
	case ShapeAuto, ShapeList, ShapeMap, ShapeMapAttributes:
	default:
		bad(fmt.Errorf(`"shape" %q: want "auto", "list", "map" or "map_attributes"`, c.Shape))
	}
	switch c.OnKeycloakError {
	case OnErrorStale, OnErrorDeny:
	default:
		bad(fmt.Errorf(`"on_keycloak_error" %q: want "stale" or "deny"`, c.OnKeycloakError))
	}
	if c.Timeout.Std() < 100*time.Millisecond || c.Timeout.Std() > 30*time.Second {
		bad(fmt.Errorf(`"timeout" %q: want between "100ms" and "30s"`, c.Timeout))
	}
	seen := map[string]bool{}
	for i, claim := range c.Claims {
		switch claim {
		case ClaimOrganization, ClaimGroups, ClaimRoles, ClaimOrganizationGroups, ClaimClientRoles:
		default:
			bad(fmt.Errorf(`"claims[%d]" %q: want "organization", "groups", "roles", "organization_groups" or "client_roles"`, i, claim))
			continue
		}
		if seen[claim] {
			bad(fmt.Errorf(`"claims[%d]" %q is listed twice`, i, claim))
		}
		seen[claim] = true
	}
	if !seen[ClaimOrganization] {
		bad(errors.New(`"claims" must include "organization"`))
	}
	if seen[ClaimOrganizationGroups] && c.Shape == ShapeAuto {
		// A login's claim cannot tell whether the organization mapper adds
		// ids: with groups in it, even the list form is an object.
		bad(errors.New(`"claims" "organization_groups" needs "shape" set to the organization mapper's form ` +
			`("list": no id, "map": "Add organization id", "map_attributes": ids and attributes), not "auto"`))
	}
	if err := c.validatePolicy(); err != nil {
		bad(err)
	}
	return errors.Join(problems...)
}

// validatePolicy checks the access rule and the tenant as Derive builds
// them, on a copy of the tenant (compiling fills it in), and that the
// claims fetch what the rule reads; the latter only once the rule parses.
func (c *Conf) validatePolicy() error {
	if c.Require == nil && c.Tenant == nil {
		return nil
	}
	var tenant *access.Tenant
	if c.Tenant != nil {
		t := *c.Tenant
		tenant = &t
	}
	policy, err := access.NewPolicy(c.Require, tenant)
	if err != nil {
		return err
	}
	probe := &Conf{}
	probe.setClaims(c.Claims)
	return probe.fetches(policy.Needs())
}

// setClaims sets the flags of the claims refreshed.
func (c *Conf) setClaims(claims []string) {
	for _, claim := range claims {
		c.groups = c.groups || claim == ClaimGroups
		c.roles = c.roles || claim == ClaimRoles
		c.orgGroups = c.orgGroups || claim == ClaimOrganizationGroups
		c.clientRoles = c.clientRoles || claim == ClaimClientRoles
	}
}

// Derive resolves the secret and the flags requests use.
func (c *Conf) Derive() error {
	if c.Invalidate {
		secret, err := conf.Secret(c.SecretEnv)
		if err != nil {
			return fmt.Errorf(`"secret_env": %w`, err)
		}
		c.secret = []byte(secret)
		c.limiter = newRateLimiter(float64(c.RateLimit), 2*c.RateLimit)
		return nil
	}
	c.shape = map[string]identity.Shape{
		ShapeAuto: identity.ShapeAbsent, ShapeList: identity.ShapeList, ShapeMap: identity.ShapeMap,
		ShapeMapAttributes: identity.ShapeMapAttributes,
	}[c.Shape]
	c.checkAccount = *c.CheckAccount
	c.setClaims(c.Claims)
	if c.Require != nil || c.Tenant != nil {
		// NewPolicy validates the rule and compiles the tenant's template.
		policy, err := access.NewPolicy(c.Require, c.Tenant)
		if err != nil {
			return err
		}
		if err := c.fetches(policy.Needs()); err != nil {
			return err
		}
		c.policy = policy
	}
	for shape := range c.settings {
		c.settings[shape] = fmt.Sprintf("orgsync shape=%s groups=%t roles=%t organization_groups=%t client_roles=%t",
			identity.Shape(shape), c.groups, c.roles, c.orgGroups, c.clientRoles)
	}
	return nil
}

// Err is the config error a route answers 500 with, nil when the config is good.
func (c *Conf) Err() error { return c.err }

// RequestFilter runs the plugin; see orgsync.go and invalidate.go.
func (p *Plugin) RequestFilter(v any, w http.ResponseWriter, r pkgHTTP.Request) {
	defer p.deps.Calls.Begin()()
	c, ok := v.(*Conf)
	if !ok || c == nil {
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
		return
	}
	if c.err != nil {
		countMisconfigured.Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
		return
	}
	if p.deps.Keycloak == nil || p.deps.Cache == nil {
		countMisconfigured.Inc()
		if p.noKeycloakLog.Allow(time.Now(), time.Minute) {
			logger().Error("orgsync route called but the runner has no Keycloak admin client " +
				"(set KEYCLOAK_URL, KEYCLOAK_REALM, KEYCLOAK_CLIENT_ID, KEYCLOAK_CLIENT_SECRET)")
		}
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
		return
	}
	if c.Invalidate {
		c.serveInvalidate(w, r)
		return
	}
	if p.deps.Emitter == nil {
		// A wiring fault of the program, not of a route: main always sets it.
		countMisconfigured.Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
		return
	}
	c.serve(w, r)
}
