package keycloak

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Admin event resource types the runner cares about.
const (
	ResourceOrganizationMembership = "ORGANIZATION_MEMBERSHIP"
	ResourceOrganization           = "ORGANIZATION"
	ResourceGroupMembership        = "GROUP_MEMBERSHIP"
	ResourceRealmRoleMapping       = "REALM_ROLE_MAPPING"
	// ResourceClientRoleMapping: users/{id}/role-mappings/clients/{client} for
	// a user, groups/{id}/role-mappings/clients/{client} for a group.
	ResourceClientRoleMapping = "CLIENT_ROLE_MAPPING"
	// ResourceOrganizationGroupMembership (Keycloak 26.6+): CREATE and DELETE
	// at organizations/{org}/groups/{group}/members/{user}; the representation
	// is the group, details carry username and email. Keycloak before 26.6
	// answers 500 to an admin-events query naming it (see
	// OrganizationGroupsSupported).
	ResourceOrganizationGroupMembership = "ORGANIZATION_GROUP_MEMBERSHIP"
	// ResourceOrganizationGroup (Keycloak 26.6+): an organization group
	// created, renamed, moved or deleted, at organizations/{org}/groups/...
	ResourceOrganizationGroup = "ORGANIZATION_GROUP"
	ResourceUser              = "USER"
	// ResourceUserSession: DELETE sessions/{sid} when an admin ends one session
	// (representation {"offline":false} or {"offline":true}); the event does not
	// name the session's user.
	ResourceUserSession = "USER_SESSION"
)

// AdminEventQuery selects admin events. The realm must have adminEventsEnabled.
type AdminEventQuery struct {
	// ResourceTypes keeps events of these types only (e.g. ResourceOrganizationMembership). Empty: all types.
	ResourceTypes []string
	// From keeps events at or after this time (Keycloak compares whole milliseconds). Zero: no lower bound.
	From time.Time
	// First skips that many events (paging). Default 0.
	First int
	// Max caps the number of events returned. Default 100.
	Max int
	// Ascending returns the oldest events first (direction=asc, Keycloak 26+); the default is newest first.
	Ascending bool
}

// AdminEvent is one admin event.
type AdminEvent struct {
	// ID is the event id (Keycloak 26+).
	ID            string
	Time          time.Time
	RealmID       string
	OperationType string // CREATE, UPDATE, DELETE, ACTION
	ResourceType  string // e.g. ORGANIZATION_MEMBERSHIP
	// ResourcePath is relative to the realm, e.g. "organizations/{org}/members/{user}".
	ResourcePath string
	// Details are extra facts, e.g. "username" and "email" of the member for
	// ORGANIZATION_MEMBERSHIP (realm needs adminEventsDetailsEnabled).
	Details map[string]string
	// Representation is the JSON body of the change, as Keycloak recorded it.
	Representation string
	// AuthUserID is the user (or service account) that made the change.
	AuthUserID string
}

// adminEventJSON is the wire form.
type adminEventJSON struct {
	ID            string `json:"id"`
	Time          int64  `json:"time"`
	RealmID       string `json:"realmId"`
	OperationType string `json:"operationType"`
	ResourceType  string `json:"resourceType"`
	ResourcePath  string `json:"resourcePath"`
	AuthDetails   struct {
		UserID string `json:"userId"`
	} `json:"authDetails"`
	Details        map[string]string `json:"details"`
	Representation string            `json:"representation"`
}

// AdminEvents returns the admin events that match q, newest first unless q.Ascending.
// The query string is built here: gocloak's encoder cannot repeat resourceTypes.
// Errors: ErrCoolingOff, *StatusError (403 when the service account lacks view-events).
func (c *Client) AdminEvents(ctx context.Context, q AdminEventQuery) ([]AdminEvent, error) {
	v := url.Values{}
	for _, t := range q.ResourceTypes {
		v.Add("resourceTypes", t)
	}
	if !q.From.IsZero() {
		v.Set("dateFrom", strconv.FormatInt(q.From.UnixMilli(), 10))
	}
	if q.First < 0 || q.Max < 0 {
		return nil, fmt.Errorf("keycloak: admin events: first %d and max %d must be >= 0", q.First, q.Max)
	}
	maxN := q.Max
	if maxN == 0 {
		maxN = 100
	}
	v.Set("first", strconv.Itoa(q.First))
	v.Set("max", strconv.Itoa(maxN))
	if q.Ascending {
		v.Set("direction", "asc")
	}

	var raw []adminEventJSON
	if err := c.getJSON(ctx, EndpointAdminEvents, "admin-events", v, &raw); err != nil {
		return nil, fmt.Errorf("keycloak: admin events: %w", err)
	}
	events := make([]AdminEvent, 0, len(raw))
	for _, e := range raw {
		events = append(events, AdminEvent{
			ID:             e.ID,
			Time:           time.UnixMilli(e.Time),
			RealmID:        e.RealmID,
			OperationType:  e.OperationType,
			ResourceType:   e.ResourceType,
			ResourcePath:   e.ResourcePath,
			Details:        e.Details,
			Representation: e.Representation,
			AuthUserID:     e.AuthDetails.UserID,
		})
	}
	return events, nil
}
