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
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
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
	// ClientRoles are the effective client roles by client id (resource_access);
	// nil when the route does not refresh them.
	ClientRoles map[string][]string `json:"client_roles,omitempty"`
}

type org struct {
	ID         string              `json:"id"`
	Alias      string              `json:"alias"`
	Attributes map[string][]string `json:"attributes,omitempty"`
	// Groups are the paths of the organization's groups (Keycloak 26.6+) the
	// user is a direct member of, sorted; nil when the route does not refresh
	// them, and left out of the JSON when empty (the route says which).
	Groups []string `json:"groups,omitempty"`
}

// organizations is the snapshot's claim in shape; with orgGroups every
// organization carries its groups (an empty list when it has none), as
// Keycloak's organization-group membership mapper writes them.
func (s *snapshot) organizations(shape identity.Shape, orgGroups bool) identity.Organizations {
	out := identity.Organizations{Shape: shape, List: make([]identity.Organization, 0, len(s.Orgs))}
	for _, o := range s.Orgs {
		entry := identity.Organization{Alias: o.Alias, ID: o.ID, Attributes: o.Attributes}
		if orgGroups {
			entry.Groups = nonNil(o.Groups)
		}
		out.List = append(out.List, entry)
	}
	return out
}

// variant is what a route's snapshot holds besides the organizations: a
// snapshot of one variant never serves a route of another.
type variant struct {
	account, groups, roles, orgGroups, clientRoles bool
}

// variantBits is how many flags variant has: userKeys lists 1<<variantBits keys.
const variantBits = 5

func variantOf(bits int) variant {
	return variant{account: bits&1 != 0, groups: bits&2 != 0, roles: bits&4 != 0, orgGroups: bits&8 != 0,
		clientRoles: bits&16 != 0}
}

// cacheKey names a user's snapshot of the variant without organization
// groups and client roles.
func cacheKey(realm, sub string, checkAccount, groups, roles bool) string {
	return variantKey(realm, sub, variant{account: checkAccount, groups: groups, roles: roles})
}

// variantKey names a user's snapshot. Keycloak user ids are unique within a
// realm only, so the realm is part of the key; what the snapshot holds
// depends on the route (account check, groups, roles, organization groups,
// client roles), so that variant is too, one letter each.
func variantKey(realm, sub string, v variant) string {
	var b strings.Builder
	b.Grow(len("orgsync:user:") + len(realm) + len(sub) + 8)
	b.WriteString("orgsync:user:")
	b.WriteString(realm)
	b.WriteByte(':')
	b.WriteString(sub)
	b.WriteString(":o")
	if v.account {
		b.WriteByte('a')
	}
	if v.groups {
		b.WriteByte('g')
	}
	if v.roles {
		b.WriteByte('r')
	}
	if v.orgGroups {
		b.WriteByte('m')
	}
	if v.clientRoles {
		b.WriteByte('c')
	}
	return b.String()
}

// userKeys lists every variant of a user's snapshot, for invalidation.
func userKeys(realm, sub string) []string {
	keys := make([]string, 0, 1<<variantBits)
	for bits := 0; bits < 1<<variantBits; bits++ {
		keys = append(keys, variantKey(realm, sub, variantOf(bits)))
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
	proof, ok := emit.ProofOf(r)
	if !ok {
		// userinfo proved nothing on this request: it is not before us in
		// the chain, or the request is anonymous.
		if c.policy != nil {
			// A rule grants access to someone: nobody is not someone.
			c.refuseAccess(w, r, "", http.StatusUnauthorized, ReasonIdentityRequired)
			return
		}
		if len(identity.HeaderBytes(r, identity.HeaderUserinfo)) > 0 || len(identity.HeaderBytes(r, identity.HeaderAccessToken)) > 0 {
			countMisconfigured.Inc()
			logger().Error("identity headers without userinfo before orgsync: refused; put userinfo first in the same ext-plugin-post-req list")
			identity.Refuse(w, http.StatusInternalServerError, ReasonNoVerifiedIdentity)
			return
		}
		if _, repeated, _ := stripWithoutUserinfo.ScanStripRequest(r); repeated != "" {
			countRefused.Inc()
			identity.Refuse(w, http.StatusBadRequest, ReasonDuplicateHeader)
			return
		}
		// Without openid-connect's X-Userinfo (refused above) the ID token
		// headers can only be a client's, and nothing here verifies them
		// (nor the refresh token, which no one before the upstream can): they go.
		identity.DeleteAllSpellingsOf(r, identity.UnverifiedOIDCHeaders...)
		countAnonymous.Inc()
		return
	}
	id := proof.Identity
	if !id.Verified() {
		// Keycloak is asked only about a user a signed token proved: never
		// about a sub taken on trust from a header.
		countMisconfigured.Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonNoVerifiedIdentity)
		return
	}
	kc := c.plugin.deps.Keycloak
	realm := kc.Realm()
	if !sameIssuer(id.Issuer(), kc.Issuer()) {
		// The token's realm is not the one the runner's Keycloak client
		// reads: asking it about this sub would describe someone else, or
		// nobody.
		countMisconfigured.Inc()
		identity.Refuse(w, http.StatusInternalServerError, ReasonRealmMismatch)
		return
	}
	value, source, err := c.lookup(ctx, realm, id, proof.At)
	if err == nil && source == SourceStale && c.OnKeycloakError == OnErrorDeny {
		err = errStaleDenied
	}
	if errors.Is(err, errOrganizationGroupsUnsupported) {
		// Not Keycloak being down: no value this route can write exists.
		countMisconfigured.Inc()
		logUnsupported()
		identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
		return
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
	var snap *snapshot
	if value != nil {
		if snap, err = c.plugin.snapshots.parse(value); err != nil {
			countMisconfigured.Inc()
			logger().Error("cached snapshot unreadable", "user", id.Subject(), "error", err)
			identity.Refuse(w, http.StatusInternalServerError, ReasonMisconfigured)
			return
		}
	}
	shape := c.shape
	if shape == identity.ShapeAbsent {
		shape = autoShape(id.OrgsShape())
	}
	em := c.plugin.deps.Emitter
	h := r.Header()
	ref := emit.Refresh{Settings: c.settings[shape], Source: source, Value: value, Now: proof.At}

	// ---- Decisions on the value ----
	// What this route decides about the user is decided here, on the
	// snapshot, on every request, before anything below may reuse a
	// rendering: a rendering kept for this login may have been stored under
	// another route's decisions (check_account false), so reuse is only ever
	// a shortcut to output this route has already decided to give.
	if snap != nil {
		if reason := c.accountRefusal(snap.Account); reason != "" {
			countRefused.Inc()
			identity.Refuse(w, http.StatusUnauthorized, reason)
			return
		}
	}
	// The route's access rules (access.go), on the same value the account
	// check read (nil: Keycloak could not be asked and nothing is cached: no
	// current data to decide on).
	if c.policy != nil && !c.allow(w, r, id.Subject(), snap) {
		return
	}
	// ---- end of the decisions ----

	countSource(source)
	if em.Replay(h, id, proof.Route, ref) {
		// Exactly this value was accepted and written for this login
		// before, with the same output settings.
		return
	}
	if snap != nil {
		id = c.apply(id, snap, shape)
	}
	if err := em.Emit(h, id, proof.Route, ref); err != nil {
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
// shape had: a function of the request alone, so every runner, before and
// after a restart, writes the same. The claim of one login cannot tell
// whether the realm's mapper adds attributes (a user whose organizations
// have none shows the map without them either way), so a map without
// attributes stays one: attributes reach the claim only when this login's
// claim carried them, or with shape "map_attributes". Absent and {} (the
// user had no organization) give the map with ids, which apps that read
// ids parse.
func autoShape(had identity.Shape) identity.Shape {
	switch had {
	case identity.ShapeList, identity.ShapeSingle, identity.ShapeMapAttributes:
		return had
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

// apply is id with Keycloak's view in place of the token's: the
// organizations in shape, and the claims the route refreshes.
func (c *Conf) apply(id identity.Identity, snap *snapshot, shape identity.Shape) identity.Identity {
	id = id.WithOrgs(snap.organizations(shape, c.orgGroups))
	if c.groups {
		id = id.WithClaim(identity.ClaimGroups, mustJSON(nonNil(snap.Groups)))
	}
	if c.roles {
		id = id.WithClaim("realm_access", mustJSON(map[string][]string{"roles": nonNil(snap.Roles)}))
	}
	if c.clientRoles {
		// A fresh login leaves resource_access out when the user holds no
		// client role, and lists only the clients where they hold one.
		if len(snap.ClientRoles) == 0 {
			id = id.WithoutClaim(identity.ClaimResourceAccess)
		} else {
			access := make(map[string]map[string][]string, len(snap.ClientRoles))
			for client, roles := range snap.ClientRoles {
				access[client] = map[string][]string{"roles": nonNil(roles)}
			}
			id = id.WithClaim(identity.ClaimResourceAccess, mustJSON(access))
		}
	}
	return id
}

// lookup returns the user's cached snapshot (JSON) and where it came from.
// An error means Keycloak could not be asked and nothing was cached.
// now is the request's time userinfo read (zero: none).
func (c *Conf) lookup(ctx context.Context, realm string, id identity.Identity, now time.Time) ([]byte, string, error) {
	key := variantKey(realm, id.Subject(), c.variant())
	// The timeout applies past an in-process hit only: a hit needs no timer.
	policy := cache.Policy{Fresh: c.FreshTTL.Std(), Stale: c.StaleTTL.Std(), Wait: c.Timeout.Std(), Now: now}
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
func (c *Conf) load(ctx context.Context, realm string, id identity.Identity) ([]byte, error) {
	kc := c.plugin.deps.Keycloak
	snap := snapshot{Account: accountActive}
	if c.checkAccount {
		user, err := kc.User(ctx, id.Subject())
		switch {
		case errors.Is(err, keycloak.ErrUserNotFound):
			snap.Account = accountUnknown
			return json.Marshal(snap)
		case err != nil:
			return nil, fmt.Errorf("orgsync: account of %s: %w", id.Subject(), err)
		case !user.Enabled:
			snap.Account = accountDisabled
			return json.Marshal(snap)
		}
	}
	orgs, err := kc.UserOrganizations(ctx, id.Subject())
	switch {
	case errors.Is(err, keycloak.ErrUserNotFound):
		snap.Account = accountUnknown
		return json.Marshal(snap)
	case err != nil:
		return nil, fmt.Errorf("orgsync: member organizations of %s: %w", id.Subject(), err)
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
		if snap.Groups, err = kc.UserGroups(ctx, id.Subject()); err != nil {
			return nil, fmt.Errorf("orgsync: groups of %s: %w", id.Subject(), err)
		}
	}
	if c.roles {
		if snap.Roles, err = kc.UserRealmRoles(ctx, id.Subject()); err != nil {
			return nil, fmt.Errorf("orgsync: realm roles of %s: %w", id.Subject(), err)
		}
	}
	if c.clientRoles {
		if snap.ClientRoles, err = kc.UserClientRoles(ctx, id.Subject()); err != nil {
			return nil, fmt.Errorf("orgsync: client roles of %s: %w", id.Subject(), err)
		}
	}
	if c.orgGroups {
		if snap.Orgs, err = c.loadOrganizationGroups(ctx, id.Subject(), snap.Orgs); err != nil {
			return nil, err
		}
	}
	recordChange(ctx, c.plugin.deps.Cache, c.plugin.deps.Feed, realm, id, &snap)
	return json.Marshal(snap)
}

// recordChange compares the fetched aliases with the last ones seen (or, the
// first time, with the token's claim) and, when they differ, logs one line and
// appends to the change feed so apps can reconcile at once.
func recordChange(ctx context.Context, c Store, signer FeedSigner, realm string, id identity.Identity, snap *snapshot) {
	now := make([]string, 0, len(snap.Orgs))
	for _, o := range snap.Orgs {
		now = append(now, o.Alias)
	}
	var before []string
	e, err := c.PeekRemote(ctx, lastKnownKey(realm, id.Subject()))
	switch {
	case err == nil:
		_ = json.Unmarshal(e.Value, &before)
	case errors.Is(err, cache.ErrMiss):
		before = id.Orgs().Aliases()
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
		_ = c.SetRemote(ctx, lastKnownKey(realm, id.Subject()), mustJSON(nonNil(now)))
		return
	}
	_ = c.SetRemote(ctx, lastKnownKey(realm, id.Subject()), mustJSON(nonNil(now)))
	at := time.Now().UTC()
	metricChanges.Inc()
	logger().Info("organization membership changed", "user", id.Subject(), "added", added, "removed", removed,
		"source", SourceKeycloak)
	fields := FeedFields(id.Subject(), added, removed, SourceKeycloak, at)
	if signer != nil {
		if err := SignFeedFields(signer, c.FeedKey(FeedStream), fields); err != nil {
			// An unsigned entry would be skipped by every reader: the log line is the record.
			logger().Warn("change feed entry not signed, not appended", "user", id.Subject(), "error", err)
			return
		}
	}
	err = c.AppendFeed(ctx, FeedStream, FeedMaxLen, fields)
	if err != nil {
		logger().Warn("change feed append failed", "user", id.Subject(), "error", err)
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
