// Package orgsync is the runner plugin that replaces the organization claim
// APISIX froze in the session at login with the user's current organizations
// from Keycloak's admin API, through the shared two-tier cache.
package orgsync

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/conf"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/inflight"
	_ "github.com/apisix-identity-runner/apisix-identity-runner/internal/runnerlog"
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
	// Claims to refresh: "organization", "groups" (group paths) and "roles"
	// (realm roles, written to realm_access.roles). Default ["organization"].
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

	err          error
	shape        identity.Shape
	checkAccount bool
	groups       bool
	roles        bool
	secret       []byte
}

// Plugin is the orgsync plugin.
type Plugin struct {
	plugin.DefaultPlugin
}

var _ plugin.Plugin = (*Plugin)(nil)

func init() {
	if err := plugin.RegisterPlugin(&Plugin{}); err != nil {
		panic(fmt.Sprintf("orgsync: register: %v", err))
	}
}

func logger() *slog.Logger { return slog.Default().With("plugin", Name) }

// Deps are the process-wide clients orgsync uses; main builds them once.
type Deps struct {
	Cache    *cache.Cache
	Keycloak *keycloak.Client
}

var deps atomic.Pointer[Deps]

// Configure installs the clients. Without it (no KEYCLOAK_URL) every orgsync
// route answers 500: orgsync cannot do its job and must not pretend to.
func Configure(d *Deps) { deps.Store(d) }

// Name is the plugin name.
func (*Plugin) Name() string { return Name }

// ParseConf never returns an error (the runner would skip the plugin): a bad
// config is kept, logged once, and answered with 500 on every request.
func (*Plugin) ParseConf(in []byte) (any, error) {
	c, err := parse(in)
	if err != nil {
		logger().Error("route config refused; the route answers 500 until it is fixed", "error", err)
		metricConfigErrors.Inc()
		return &Conf{err: err}, nil
	}
	return c, nil
}

func parse(in []byte) (*Conf, error) {
	c := &Conf{}
	if err := conf.Parse(Name, in, c); err != nil {
		return nil, err
	}
	return c, nil
}

var _ conf.Lifecycle = (*Conf)(nil)

// SetDefaults fills in every key left out.
func (c *Conf) SetDefaults() {
	if c.Invalidate {
		if c.SignatureHeader == "" {
			c.SignatureHeader = "X-Keycloak-Signature"
		}
		return
	}
	if c.FreshTTL == 0 {
		c.FreshTTL = conf.Duration(30 * time.Second)
	}
	if c.StaleTTL == 0 {
		c.StaleTTL = conf.Duration(10 * time.Minute)
	}
	if c.Shape == "" {
		c.Shape = ShapeAuto
	}
	if c.OnKeycloakError == "" {
		c.OnKeycloakError = OnErrorStale
	}
	if c.CheckAccount == nil {
		t := true
		c.CheckAccount = &t
	}
	if c.Claims == nil {
		c.Claims = []string{ClaimOrganization}
	}
	if c.Timeout == 0 {
		c.Timeout = conf.Duration(2 * time.Second)
	}
}

// Validate checks the config without changing it.
func (c *Conf) Validate() error {
	if c.Invalidate {
		if c.FreshTTL != 0 || c.StaleTTL != 0 || c.Shape != "" || c.OnKeycloakError != "" || c.CheckAccount != nil ||
			c.Claims != nil || c.Timeout != 0 {
			return errors.New(`"invalidate": true takes only "secret_env" and "signature_header"`)
		}
		if c.SecretEnv == "" {
			return errors.New(`"secret_env" is required with "invalidate": name the environment variable holding the HMAC secret`)
		}
		return nil
	}
	if c.SecretEnv != "" || c.SignatureHeader != "" {
		return errors.New(`"secret_env" and "signature_header" go with "invalidate": true only`)
	}
	if c.FreshTTL.Std() < time.Second || c.FreshTTL.Std() > 24*time.Hour {
		return fmt.Errorf(`"fresh_ttl" %q: want between "1s" and "24h"`, c.FreshTTL)
	}
	if c.StaleTTL < c.FreshTTL {
		return fmt.Errorf(`"stale_ttl" %q must be >= "fresh_ttl" %q`, c.StaleTTL, c.FreshTTL)
	}
	if c.StaleTTL.Std() > 24*time.Hour {
		return fmt.Errorf(`"stale_ttl" %q: want at most "24h"`, c.StaleTTL)
	}
	switch c.Shape {
	case ShapeAuto, ShapeList, ShapeMap, ShapeMapAttributes:
	default:
		return fmt.Errorf(`"shape" %q: want "auto", "list", "map" or "map_attributes"`, c.Shape)
	}
	switch c.OnKeycloakError {
	case OnErrorStale, OnErrorDeny:
	default:
		return fmt.Errorf(`"on_keycloak_error" %q: want "stale" or "deny"`, c.OnKeycloakError)
	}
	if c.Timeout.Std() < 100*time.Millisecond || c.Timeout.Std() > 30*time.Second {
		return fmt.Errorf(`"timeout" %q: want between "100ms" and "30s"`, c.Timeout)
	}
	seen := map[string]bool{}
	for i, claim := range c.Claims {
		switch claim {
		case ClaimOrganization, ClaimGroups, ClaimRoles:
		default:
			return fmt.Errorf(`"claims[%d]" %q: want "organization", "groups" or "roles"`, i, claim)
		}
		if seen[claim] {
			return fmt.Errorf(`"claims[%d]" %q is listed twice`, i, claim)
		}
		seen[claim] = true
	}
	if !seen[ClaimOrganization] {
		return errors.New(`"claims" must include "organization"`)
	}
	return nil
}

// Derive resolves the secret and the flags requests use.
func (c *Conf) Derive() error {
	if c.Invalidate {
		secret, err := conf.Secret(c.SecretEnv)
		if err != nil {
			return fmt.Errorf(`"secret_env": %w`, err)
		}
		c.secret = []byte(secret)
		return nil
	}
	c.shape = map[string]identity.Shape{
		ShapeAuto: identity.ShapeAbsent, ShapeList: identity.ShapeList, ShapeMap: identity.ShapeMap,
		ShapeMapAttributes: identity.ShapeMapAttributes,
	}[c.Shape]
	c.checkAccount = *c.CheckAccount
	for _, claim := range c.Claims {
		c.groups = c.groups || claim == ClaimGroups
		c.roles = c.roles || claim == ClaimRoles
	}
	return nil
}

// Err is the config error a route answers 500 with, nil when the config is good.
func (c *Conf) Err() error { return c.err }

// RequestFilter runs the plugin; see orgsync.go and invalidate.go.
func (*Plugin) RequestFilter(v any, w http.ResponseWriter, r pkgHTTP.Request) {
	defer inflight.Begin()()
	c, ok := v.(*Conf)
	if !ok || c == nil {
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured, "orgsync: no config")
		return
	}
	if c.err != nil {
		metricRequests.WithLabelValues(outcomeMisconfigured).Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured, c.err.Error())
		return
	}
	d := deps.Load()
	if d == nil || d.Keycloak == nil || d.Cache == nil {
		metricRequests.WithLabelValues(outcomeMisconfigured).Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured,
			"orgsync: the runner has no Keycloak admin client (set KEYCLOAK_URL, KEYCLOAK_REALM, KEYCLOAK_CLIENT_ID, KEYCLOAK_CLIENT_SECRET)")
		return
	}
	if c.Invalidate {
		c.serveInvalidate(w, r, d)
		return
	}
	c.serve(w, r, d)
}
