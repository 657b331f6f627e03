package orgsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tracing"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// Reasons orgsync refuses a request.
const (
	ReasonMisconfigured      = "misconfigured"
	ReasonNoVerifiedIdentity = "userinfo_missing_before_orgsync"
	ReasonAccountUnknown     = "account_unknown"
	ReasonAccountDisabled    = "account_disabled"
	ReasonKeycloakError      = "keycloak_unavailable"
	ReasonRealmMismatch      = "token_realm_not_keycloak_realm"
	ReasonDuplicateHeader    = "duplicate_identity_header"
)

// Values of X-User-Orgs-Source.
const (
	SourceKeycloak = "keycloak"
	SourceCache    = "cache"
	SourceStale    = "stale"
	SourceToken    = "token"
)

// Account states recorded with a user's memberships.
const (
	accountActive   = "active"
	accountDisabled = "disabled"
	accountUnknown  = "unknown"
)

// errStaleDenied: Keycloak failed and only a list past stale_ttl is cached,
// which on_keycloak_error "deny" does not serve.
var errStaleDenied = errors.New("orgsync: only a stale list is cached")

// FeedStream is the Redis stream (under the cache's key prefix) holding the
// membership change feed.
const FeedStream = "orgsync:changes"

// FeedMaxLen caps the change feed (approximately: Redis trims whole nodes).
const FeedMaxLen = 10000

// FeedFields is one change feed entry as apps read it: the user, the aliases
// added and removed (JSON lists), where the change was seen and when. The
// feed's readers (clients/python, demo/feedwriter) depend on these names.
func FeedFields(user string, added, removed []string, source string, at time.Time) map[string]string {
	return map[string]string{
		"user":    user,
		"added":   string(mustJSON(nonNil(added))),
		"removed": string(mustJSON(nonNil(removed))),
		"source":  source,
		"at":      at.UTC().Format(time.RFC3339Nano),
	}
}

// snapshot is what the cache holds for a user: what Keycloak said, at once.
type snapshot struct {
	Account string `json:"account"`
	Orgs    []org  `json:"orgs"`
	// Groups and Roles are nil when the route does not refresh them.
	Groups []string `json:"groups,omitempty"`
	Roles  []string `json:"roles,omitempty"`
}

type org struct {
	ID         string              `json:"id"`
	Alias      string              `json:"alias"`
	Attributes map[string][]string `json:"attributes,omitempty"`
}

func (s *snapshot) organizations(shape identity.Shape) identity.Organizations {
	out := identity.Organizations{Shape: shape, List: make([]identity.Organization, 0, len(s.Orgs))}
	for _, o := range s.Orgs {
		out.List = append(out.List, identity.Organization{Alias: o.Alias, ID: o.ID, Attributes: o.Attributes})
	}
	return out
}

// cacheKey names a user's snapshot. Keycloak user ids are unique within a
// realm only, so the realm is part of the key; what the snapshot holds
// depends on the route (account check, groups, roles), so that variant is
// too.
func cacheKey(realm, sub string, checkAccount, groups, roles bool) string {
	var b strings.Builder
	b.Grow(len("orgsync:user:") + len(realm) + len(sub) + 8)
	b.WriteString("orgsync:user:")
	b.WriteString(realm)
	b.WriteByte(':')
	b.WriteString(sub)
	b.WriteString(":o")
	if checkAccount {
		b.WriteByte('a')
	}
	if groups {
		b.WriteByte('g')
	}
	if roles {
		b.WriteByte('r')
	}
	return b.String()
}

// userKeys lists every variant of a user's snapshot, for invalidation.
func userKeys(realm, sub string) []string {
	keys := make([]string, 0, 8)
	for _, a := range []bool{false, true} {
		for _, g := range []bool{false, true} {
			for _, r := range []bool{false, true} {
				keys = append(keys, cacheKey(realm, sub, a, g, r))
			}
		}
	}
	return keys
}

// lastKnownKey holds the aliases last seen for a user, for the change feed;
// invalidation leaves it alone so that the next fetch can be compared. It
// lives in the shared tier only: the in-process tier holds one entry per
// user, the snapshot the request path reads.
func lastKnownKey(realm, sub string) string { return "orgsync:last:" + realm + ":" + sub }

// stripWithoutUserinfo removes a client's copies of every header orgsync
// or userinfo emits by default, and the unverifiable ID token headers, when
// no userinfo ran before orgsync: whatever precedes orgsync, nothing that
// looks like a trusted identity header reaches the upstream unless the runner
// wrote it.
var stripWithoutUserinfo = identity.NewStripRule(identity.EmittedHeaders...)

func (c *Conf) serve(w http.ResponseWriter, r pkgHTTP.Request) {
	ctx := r.Context()
	if t := c.plugin.deps.Tracer; t != nil {
		var span trace.Span
		ctx, span = tracing.Request(ctx, t, Name, r.Header())
		defer span.End()
	}
	proof := identity.ProofOf(r)
	if proof == nil {
		// userinfo proved nothing on this request: it is not before us in
		// the chain, or the request is anonymous.
		h := r.Header()
		if h.Get(identity.HeaderUserinfo) != "" || h.Get(identity.HeaderAccessToken) != "" {
			countMisconfigured.Inc()
			logger().Error("identity headers without userinfo before orgsync: refused; put userinfo first in the same ext-plugin-post-req list")
			identity.Refuse(w, http.StatusInternalServerError, ReasonNoVerifiedIdentity)
			return
		}
		if _, repeated := stripWithoutUserinfo.Scan(h); repeated != "" {
			countRefused.Inc()
			identity.Refuse(w, http.StatusBadRequest, ReasonDuplicateHeader)
			return
		}
		stripWithoutUserinfo.Strip(h)
		// Without openid-connect's X-Userinfo (refused above) the ID token
		// headers can only be a client's, and nothing here verifies them
		// (nor the refresh token, which no one before the upstream can): they go.
		identity.DeleteAllSpellings(h, identity.UnverifiedOIDCHeaders...)
		countAnonymous.Inc()
		return
	}
	id := proof.Identity
	if !id.TokenVerified {
		// Keycloak is asked only about a user a signed token proved: never
		// about a sub taken on trust from a header.
		countMisconfigured.Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonNoVerifiedIdentity)
		return
	}
	if id.Orgs.Shape == identity.ShapeMapAttributes {
		c.plugin.attributesSeen.Store(true)
	}
	kc := c.plugin.deps.Keycloak
	realm := kc.Realm()
	if !sameIssuer(id.Issuer, kc.Issuer()) {
		// The token's realm is not the one the runner's Keycloak client
		// reads: asking it about this sub would describe someone else, or
		// nobody.
		countMisconfigured.Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonRealmMismatch)
		return
	}
	value, source, err := c.lookup(ctx, realm, id)
	if err == nil && source == SourceStale && c.OnKeycloakError == OnErrorDeny {
		err = errStaleDenied
	}
	if err != nil {
		metricKeycloakErrors.Inc()
		if c.OnKeycloakError == OnErrorDeny {
			countDenied.Inc()
			identity.Refuse(w, http.StatusServiceUnavailable, ReasonKeycloakError)
			return
		}
		// Keycloak down and nothing cached: the token's own claim, marked.
		source, value = SourceToken, nil
	}
	shape := c.shape
	if shape == identity.ShapeAbsent {
		shape = c.plugin.autoShape(id.Orgs.Shape)
	}
	// The route's own decisions come first, on the value itself: a rendering
	// reused below may have been stored by another route of the same login
	// whose settings let it through (check_account false), so reuse is only
	// ever a shortcut to output this route has already decided to give.
	var snap snapshot
	if value != nil {
		if err := json.Unmarshal(value, &snap); err != nil {
			countMisconfigured.Inc()
			logger().Error("cached snapshot unreadable", "user", id.Subject, "error", err)
			identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
			return
		}
		if reason := c.accountRefusal(snap.Account); reason != "" {
			countRefused.Inc()
			identity.Refuse(w, http.StatusUnauthorized, reason)
			return
		}
	}
	refreshed := *id
	refreshed.OrgsSource = source
	refreshed.Refresh = &identity.Refresh{By: c.profiles[shape], Source: source, Value: value}
	if proof.Emitter.Replay(r, &refreshed) {
		// Exactly this value was accepted and written for this login
		// before, with the same output settings.
		countSource(source)
		return
	}
	if value != nil {
		c.apply(&refreshed, &snap, shape)
	}
	countSource(source)
	if err := proof.Emitter.Emit(r, &refreshed); err != nil {
		countMisconfigured.Inc()
		logger().Error("cannot emit the refreshed identity", "error", err)
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
	}
}

// accountRefusal is the reason this route refuses an account in state
// account, "" when it lets it through.
func (c *Conf) accountRefusal(account string) string {
	if !c.checkAccount {
		return ""
	}
	switch account {
	case accountActive:
		return ""
	case accountDisabled:
		return ReasonAccountDisabled
	}
	// Unknown, and any state this version does not know: fail closed.
	return ReasonAccountUnknown
}

// autoShape is what shape "auto" writes for a login whose claim came in
// shape had: what a fresh login would show. The claim of one login cannot tell
// whether the realm's mapper adds attributes (a user whose organizations have
// none shows the map without them either way), so the plugin remembers
// whether any login's claim carried attributes: then the mapper adds them,
// and a user who joins an organization with attributes sees them at once.
func (p *Plugin) autoShape(had identity.Shape) identity.Shape {
	switch had {
	case identity.ShapeList, identity.ShapeSingle:
		return had
	case identity.ShapeMapAttributes:
		return identity.ShapeMapAttributes
	}
	if p.attributesSeen.Load() {
		return identity.ShapeMapAttributes
	}
	return identity.ShapeMap
}

// sameIssuer reports whether a token's issuer is the realm's the Keycloak
// client reads. The whole URL counts (scheme, host, port, path): a realm of
// the same name on another Keycloak has other users under the same ids.
// Only a trailing slash is forgiven.
func sameIssuer(token, realm string) bool {
	return token != "" && strings.TrimSuffix(token, "/") == strings.TrimSuffix(realm, "/")
}

// apply replaces the claims with Keycloak's view, the organizations in shape.
func (c *Conf) apply(id *identity.Identity, snap *snapshot, shape identity.Shape) {
	id.Orgs = snap.organizations(shape)
	if c.groups || c.roles {
		id.Claims = id.Claims.Clone()
	}
	if c.groups {
		id.Claims[identity.ClaimGroups] = mustJSON(nonNil(snap.Groups))
	}
	if c.roles {
		id.Claims["realm_access"] = mustJSON(map[string][]string{"roles": nonNil(snap.Roles)})
	}
}

// lookup returns the user's cached snapshot (JSON) and where it came from.
// An error means Keycloak could not be asked and nothing was cached.
func (c *Conf) lookup(ctx context.Context, realm string, id *identity.Identity) ([]byte, string, error) {
	key := cacheKey(realm, id.Subject, c.checkAccount, c.groups, c.roles)
	// The timeout applies past an in-process hit only: a hit needs no timer.
	policy := cache.Policy{Fresh: c.FreshTTL.Std(), Stale: c.StaleTTL.Std(), Wait: c.Timeout.Std()}
	res, err := c.plugin.deps.Cache.Get(ctx, key, policy, func(ctx context.Context) ([]byte, error) {
		return c.load(ctx, realm, id)
	})
	if err != nil {
		return nil, "", err
	}
	source := SourceCache
	switch {
	case res.Source == cache.SourceLoader:
		source = SourceKeycloak
	case res.Source == cache.SourceStale && res.LoadErr != nil:
		source = SourceStale
		metricStaleServes.Inc()
	}
	return res.Value, source, nil
}

// load asks Keycloak for the user's current memberships (and account state).
func (c *Conf) load(ctx context.Context, realm string, id *identity.Identity) ([]byte, error) {
	kc := c.plugin.deps.Keycloak
	snap := snapshot{Account: accountActive}
	if c.checkAccount {
		user, err := kc.User(ctx, id.Subject)
		switch {
		case errors.Is(err, keycloak.ErrUserNotFound):
			snap.Account = accountUnknown
			return json.Marshal(snap)
		case err != nil:
			return nil, fmt.Errorf("orgsync: account of %s: %w", id.Subject, err)
		case !user.Enabled:
			snap.Account = accountDisabled
			return json.Marshal(snap)
		}
	}
	orgs, err := kc.UserOrganizations(ctx, id.Subject)
	switch {
	case errors.Is(err, keycloak.ErrUserNotFound):
		snap.Account = accountUnknown
		return json.Marshal(snap)
	case err != nil:
		return nil, fmt.Errorf("orgsync: member organizations of %s: %w", id.Subject, err)
	}
	snap.Orgs = make([]org, 0, len(orgs))
	for _, o := range orgs {
		// A disabled organization grants nothing, so it is not a membership
		// to report.
		if !o.Enabled {
			continue
		}
		snap.Orgs = append(snap.Orgs, org{ID: o.ID, Alias: o.Alias, Attributes: o.Attributes})
	}
	sort.Slice(snap.Orgs, func(i, j int) bool { return snap.Orgs[i].Alias < snap.Orgs[j].Alias })
	if c.groups {
		if snap.Groups, err = kc.UserGroups(ctx, id.Subject); err != nil {
			return nil, fmt.Errorf("orgsync: groups of %s: %w", id.Subject, err)
		}
	}
	if c.roles {
		if snap.Roles, err = kc.UserRealmRoles(ctx, id.Subject); err != nil {
			return nil, fmt.Errorf("orgsync: realm roles of %s: %w", id.Subject, err)
		}
	}
	recordChange(ctx, c.plugin.deps.Cache, c.plugin.deps.Feed, realm, id, &snap)
	return json.Marshal(snap)
}

// recordChange compares the fetched aliases with the last ones seen (or, the
// first time, with the token's claim) and, when they differ, logs one line and
// appends to the change feed so apps can reconcile at once.
func recordChange(ctx context.Context, c Store, signer FeedSigner, realm string, id *identity.Identity, snap *snapshot) {
	now := make([]string, 0, len(snap.Orgs))
	for _, o := range snap.Orgs {
		now = append(now, o.Alias)
	}
	var before []string
	e, err := c.PeekRemote(ctx, lastKnownKey(realm, id.Subject))
	switch {
	case err == nil:
		_ = json.Unmarshal(e.Value, &before)
	case errors.Is(err, cache.ErrMiss):
		before = id.Orgs.Aliases()
	default:
		// Redis cannot be asked now: compare at the next load, not against
		// the token (which would report changes that are not).
		return
	}
	added, removed := identity.DiffAliases(before, now)
	if len(added) == 0 && len(removed) == 0 {
		if len(before) == 0 && len(now) == 0 {
			return
		}
		_ = c.SetRemote(ctx, lastKnownKey(realm, id.Subject), mustJSON(nonNil(now)))
		return
	}
	_ = c.SetRemote(ctx, lastKnownKey(realm, id.Subject), mustJSON(nonNil(now)))
	at := time.Now().UTC()
	metricChanges.Inc()
	logger().Info("organization membership changed", "user", id.Subject, "added", added, "removed", removed,
		"source", SourceKeycloak)
	fields := FeedFields(id.Subject, added, removed, SourceKeycloak, at)
	if signer != nil {
		if err := SignFeedFields(signer, c.FeedKey(FeedStream), fields); err != nil {
			// An unsigned entry would be skipped by every reader: the log line is the record.
			logger().Warn("change feed entry not signed, not appended", "user", id.Subject, "error", err)
			return
		}
	}
	err = c.AppendFeed(ctx, FeedStream, FeedMaxLen, fields)
	if err != nil {
		logger().Warn("change feed append failed", "user", id.Subject, "error", err)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}
