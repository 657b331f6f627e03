package keycloak

import (
	"context"
	"testing"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// TestRealAdminEventsForMembership adds and removes a member the way MITx
// Online does and reads both changes back as admin events.
func TestRealAdminEventsForMembership(t *testing.T) {
	c := realClient(t)
	ctx := context.Background()
	u := kctest.CreateUser(t, "events")
	org := kctest.OrgIDByAlias(t, "globex")
	from := time.Now().Add(-2 * time.Second) // Keycloak's clock is this machine's clock

	kctest.AddMember(t, org, u.ID)
	kctest.RemoveMember(t, org, u.ID)

	var create, del *AdminEvent
	deadline := time.Now().Add(10 * time.Second)
	for (create == nil || del == nil) && time.Now().Before(deadline) {
		events, err := c.AdminEvents(ctx, AdminEventQuery{
			ResourceTypes: []string{ResourceOrganizationMembership}, From: from, Max: 500, Ascending: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range events {
			if e.Details["username"] != u.Username {
				continue
			}
			switch {
			case e.OperationType == "CREATE" && e.ResourcePath == "organizations/"+org+"/members":
				create = &events[i]
			case e.OperationType == "DELETE" && e.ResourcePath == "organizations/"+org+"/members/"+u.ID:
				del = &events[i]
			}
		}
		if create == nil || del == nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if create == nil || del == nil {
		t.Fatalf("membership events: create %+v, delete %+v", create, del)
	}
	if create.Details["email"] != u.Email || create.RealmID == "" || create.Time.Before(from) || del.Time.Before(create.Time) {
		t.Fatalf("create %+v, delete %+v", create, del)
	}

	// Newest first is Keycloak's default order.
	events, err := c.AdminEvents(ctx, AdminEventQuery{ResourceTypes: []string{ResourceOrganizationMembership}, From: from, Max: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 || events[0].Time.Before(events[len(events)-1].Time) {
		t.Fatalf("default order not newest first: %+v", events)
	}
}
