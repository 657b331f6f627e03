package orgsync

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// Reasons the invalidation endpoint refuses a call.
const (
	ReasonBadSignature = "bad_signature"
	ReasonBadRequest   = "bad_request"
	ReasonTooOld       = "invalidation_too_old"
	ReasonReplayed     = "invalidation_replayed"
	ReasonRateLimited  = "rate_limited"
	// The fleet's record of accepted calls (Redis) cannot be asked.
	ReasonReplayUnchecked = "replay_check_unavailable"
	// The process's record of accepted calls is full.
	ReasonReplaySetFull = "replay_set_full"
)

// Sources of an invalidation (metric label, log field).
const (
	InvalidatedByWebhook = "webhook"
	InvalidatedByEvents  = "admin_events"
)

// invalidateRequest is the endpoint's own body, or a keycloak-events webhook
// payload (an admin event).
type invalidateRequest struct {
	UserIDs        []string `json:"user_ids"`
	OrganizationID string   `json:"organization_id"`
	// Time is when the invalidation was made, in epoch milliseconds: the
	// signature covers it, so an old body cannot be replayed. keycloak-events
	// sends the admin event's own time under the same name.
	Time int64 `json:"time"`

	// keycloak-events (p2-inc) admin event fields.
	Type           string            `json:"type"`
	OperationType  string            `json:"operationType"`
	ResourceType   string            `json:"resourceType"`
	ResourcePath   string            `json:"resourcePath"`
	Representation string            `json:"representation"`
	Details        map[string]string `json:"details"`
}

func (c *Conf) serveInvalidate(w http.ResponseWriter, r pkgHTTP.Request) {
	countInvalidate.Inc()
	d := c.plugin.deps
	if r.Method() != http.MethodPost {
		w.Header().Set("Allow", "POST")
		identity.Refuse(w, http.StatusMethodNotAllowed, ReasonBadRequest)
		return
	}
	// The size cap comes first: it is checked before the body is read. The
	// rate limit comes after the signature and the replay check: the cheap
	// HMAC is what tells the sender's calls from anybody's, and a limit
	// counting unsigned calls or replays would let anybody use up the
	// sender's budget.
	if refuseUnreadableBody(w, r.Header(), maxInvalidateBodyBytes) {
		return
	}
	body, err := r.Body()
	if err != nil {
		identity.Refuse(w, http.StatusBadRequest, ReasonBadRequest)
		return
	}
	if int64(len(body)) > maxInvalidateBodyBytes {
		// More than Content-Length announced: APISIX would not send it.
		identity.Refuse(w, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge)
		return
	}
	mac := c.bodyMAC(body)
	if !signatureMatches(r.Header().Get(c.SignatureHeader), mac) {
		metricInvalidationsRefused.Inc()
		// Anyone can post here: log at most once a minute, count every one.
		if c.plugin.badSignatureLog.Allow(time.Now(), time.Minute) {
			logger().Warn("invalidation refused: bad signature (logged at most once a minute; see the metric)",
				"header", c.SignatureHeader)
		}
		identity.Refuse(w, http.StatusUnauthorized, ReasonBadSignature)
		return
	}
	var req invalidateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		identity.Refuse(w, http.StatusBadRequest, ReasonBadRequest)
		return
	}
	now := time.Now()
	if reason := c.fresh(req.Time, now); reason != "" {
		metricInvalidationsRefused.Inc()
		identity.Refuse(w, http.StatusUnauthorized, reason)
		return
	}
	release, status, reason := c.plugin.claimInvalidation(r.Context(), mac, time.UnixMilli(req.Time), now)
	if release == nil {
		metricInvalidationsRefused.Inc()
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		identity.Refuse(w, status, reason)
		return
	}
	if !c.limiter.allow(now) {
		// Each accepted call lists members and flushes caches on every
		// runner: the sender's own flood is cut here, and may be sent again.
		release()
		w.Header().Set("Retry-After", "1")
		identity.Refuse(w, http.StatusTooManyRequests, ReasonRateLimited)
		return
	}
	accepted := false
	defer func() {
		if !accepted {
			release()
		}
	}()
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var users []string
	switch {
	case len(req.UserIDs) > 0 || req.OrganizationID != "":
		users = append(users, req.UserIDs...)
		if req.OrganizationID != "" {
			members, err := d.Keycloak.OrganizationMemberIDs(ctx, req.OrganizationID)
			if err != nil {
				logger().Warn("invalidation: organization members unreadable", "organization", req.OrganizationID, "error", err)
				identity.Refuse(w, http.StatusBadGateway, ReasonKeycloakError)
				return
			}
			users = append(users, members...)
		}
	case req.ResourceType != "" || req.Type != "":
		ev := req.adminEvent()
		users, err = affectedUsers(ctx, d.Keycloak, ev)
		if err != nil {
			logger().Warn("invalidation: affected users unreadable", "error", err)
			identity.Refuse(w, http.StatusBadGateway, ReasonKeycloakError)
			return
		}
	default:
		identity.Refuse(w, http.StatusBadRequest, ReasonBadRequest)
		return
	}
	users = dedupe(users)
	if err := invalidateUsers(ctx, d, users, InvalidatedByWebhook); err != nil {
		logger().Warn("invalidation failed", "error", err)
		identity.Refuse(w, http.StatusServiceUnavailable, ReasonKeycloakError)
		return
	}
	accepted = true
	out, _ := json.Marshal(map[string]any{"invalidated": map[string]any{"user_ids": nonNil(users)}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// maxFutureSkew tolerates a sender's clock ahead of ours.
const maxFutureSkew = time.Minute

// fresh refuses a signed body made more than max_age ago, or too far in the
// future: whoever captured one signed call could otherwise replay it without
// end (a body seen before within max_age is claimInvalidation's to refuse).
// It returns the reason, or "" when the body is fresh.
func (c *Conf) fresh(atMillis int64, now time.Time) string {
	if atMillis <= 0 {
		return ReasonTooOld
	}
	at := time.UnixMilli(atMillis)
	if now.Sub(at) > c.MaxAge.Std() || at.Sub(now) > maxFutureSkew {
		return ReasonTooOld
	}
	return ""
}

// bodyMAC is the HMAC-SHA256 of body under the route's secret: what the
// signature header must carry, and the body's name in the replay record
// (the same body signed with another secret is another call).
func (c *Conf) bodyMAC(body []byte) [sha256.Size]byte {
	mac := hmac.New(sha256.New, c.secret)
	mac.Write(body)
	var out [sha256.Size]byte
	mac.Sum(out[:0])
	return out
}

func (c *Conf) signatureValid(header string, body []byte) bool {
	return signatureMatches(header, c.bodyMAC(body))
}

// signatureMatches compares a signature header (hex, optionally prefixed
// "sha256=") with mac in constant time.
func signatureMatches(header string, mac [sha256.Size]byte) bool {
	header = strings.TrimSpace(header)
	header = strings.TrimPrefix(header, "sha256=")
	got, err := hex.DecodeString(header)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	return hmac.Equal(got, mac[:])
}

// adminEvent reads a keycloak-events payload, whose "type" looks like
// "admin.ORGANIZATION_MEMBERSHIP-CREATE" when the separate fields are absent.
func (req *invalidateRequest) adminEvent() keycloak.AdminEvent {
	ev := keycloak.AdminEvent{OperationType: req.OperationType, ResourceType: req.ResourceType,
		ResourcePath: req.ResourcePath, Representation: req.Representation, Details: req.Details}
	if rest, ok := strings.CutPrefix(req.Type, "admin."); ok && (ev.ResourceType == "" || ev.OperationType == "") {
		if i := strings.LastIndexByte(rest, '-'); i > 0 {
			ev.ResourceType, ev.OperationType = rest[:i], rest[i+1:]
		}
	}
	return ev
}

// affectedUsers resolves an admin event to the users whose cached claims it
// makes wrong.
func affectedUsers(ctx context.Context, kc Directory, ev keycloak.AdminEvent) ([]string, error) {
	parts := strings.Split(strings.Trim(ev.ResourcePath, "/"), "/")
	switch ev.ResourceType {
	case keycloak.ResourceOrganizationMembership:
		// DELETE: organizations/{org}/members/{user}. CREATE:
		// organizations/{org}/members, the member is the body (the bare
		// user id, maybe quoted) or, failing that, details.username.
		if len(parts) == 4 && parts[0] == "organizations" && parts[2] == "members" {
			return []string{parts[3]}, nil
		}
		if id := bareUserID(ev.Representation); id != "" {
			return []string{id}, nil
		}
		if name := ev.Details["username"]; name != "" {
			id, err := kc.UserIDByUsername(ctx, name)
			if errors.Is(err, keycloak.ErrUserNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("orgsync: user id of %s: %w", name, err)
			}
			return []string{id}, nil
		}
		return nil, nil
	case keycloak.ResourceOrganization, keycloak.ResourceOrganizationGroup:
		if org, ok := orgWideEvent(ev); ok {
			return organizationMembers(ctx, kc, org)
		}
	case keycloak.ResourceOrganizationGroupMembership:
		// organizations/{org}/groups/{group}/members/{user}, CREATE and DELETE
		// alike (Keycloak 26.6+).
		if len(parts) == 6 && parts[0] == "organizations" && parts[2] == "groups" && parts[4] == "members" {
			return []string{parts[5]}, nil
		}
	case keycloak.ResourceUser, keycloak.ResourceGroupMembership, keycloak.ResourceRealmRoleMapping,
		keycloak.ResourceClientRoleMapping:
		// users/{user}[/groups/{group} | /role-mappings/realm | /role-mappings/clients/{client}].
		// A role mapped to a group (groups/{group}/role-mappings/...) is
		// not followed to the group's members: fresh_ttl covers them.
		if len(parts) >= 2 && parts[0] == "users" {
			return []string{parts[1]}, nil
		}
	}
	return nil, nil
}

// orgWideEvent reads an event that touches every member of an organization:
// the organization updated or deleted (organizations/{org}), or one of its
// groups created, renamed, moved or deleted (organizations/{org}/groups[/...]:
// that changes the paths its members see, and after a deletion the group's
// members cannot be listed, so every member of the organization is refreshed).
func orgWideEvent(ev keycloak.AdminEvent) (orgID string, ok bool) {
	if ev.ResourceType != keycloak.ResourceOrganization && ev.ResourceType != keycloak.ResourceOrganizationGroup {
		return "", false
	}
	parts := strings.Split(strings.Trim(ev.ResourcePath, "/"), "/")
	if len(parts) < 2 || parts[0] != "organizations" || parts[1] == "" {
		return "", false
	}
	return parts[1], true
}

func organizationMembers(ctx context.Context, kc Directory, orgID string) ([]string, error) {
	members, err := kc.OrganizationMemberIDs(ctx, orgID)
	if errors.Is(err, keycloak.ErrOrganizationNotFound) {
		// Deleted with its members: they are not listed any more; the
		// fresh_ttl backstop covers them.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("orgsync: members of organization %s: %w", orgID, err)
	}
	return members, nil
}

// bareUserID reads the body Keycloak recorded for an add-member call: the
// user id, raw or as a JSON string.
func bareUserID(rep string) string {
	rep = strings.TrimSpace(rep)
	var s string
	if json.Unmarshal([]byte(rep), &s) == nil {
		rep = s
	}
	if rep == "" || strings.ContainsAny(rep, "{}[]\" /") || len(rep) > 64 {
		return ""
	}
	return rep
}

// invalidateBatch is how many users one invalidation names. The invalidation
// webhook naming an organization invalidates every member: 50 000 members are
// 400 000 keys, and in one message (about 22 MB) they come near the 32 MB
// Redis lets a subscriber fall behind by before it cuts it off. (The watcher
// invalidates an organization's members a page of 100 at a time.)
const invalidateBatch = 1000

// loggedUsers is how many of the users invalidated at once the log line names.
const loggedUsers = 20

// invalidateUsers drops every cached snapshot of the users, on every runner,
// invalidateBatch users at a time. A batch that fails fails the call; the
// ones before it are done, and doing them again changes nothing.
func invalidateUsers(ctx context.Context, d Deps, users []string, source string) error {
	if len(users) == 0 {
		return nil
	}
	realm := d.Keycloak.Realm()
	for start := 0; start < len(users); start += invalidateBatch {
		batch := users[start:min(start+invalidateBatch, len(users))]
		keys := make([]string, 0, len(batch)*8)
		for _, u := range batch {
			keys = append(keys, userKeys(realm, u)...)
		}
		if err := d.Cache.Invalidate(ctx, keys...); err != nil {
			return fmt.Errorf("orgsync: invalidating %d users: %w", len(users), err)
		}
	}
	metricInvalidations.WithLabelValues(source).Add(float64(len(users)))
	if len(users) <= loggedUsers {
		logger().Info("cached memberships invalidated", "users", users, "source", source)
	} else {
		logger().Info("cached memberships invalidated", "count", len(users), "first_users", users[:loggedUsers],
			"source", source)
	}
	return nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
