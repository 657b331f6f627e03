package orgsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

func TestSignature(t *testing.T) {
	c := &Conf{secret: []byte("k")}
	body := []byte(`{"user_ids":["u1"]}`)
	m := hmac.New(sha256.New, []byte("k"))
	m.Write(body)
	good := hex.EncodeToString(m.Sum(nil))
	assert.True(t, c.signatureValid(good, body))
	assert.True(t, c.signatureValid("sha256="+good, body))
	assert.False(t, c.signatureValid("", body))
	assert.False(t, c.signatureValid("zz", body))
	assert.False(t, c.signatureValid(good, append(body, ' ')), "the signature covers the exact body")
	assert.False(t, c.signatureValid(good[:len(good)-2]+"00", body))
}

func TestKeycloakEventsPayload(t *testing.T) {
	req := &invalidateRequest{Type: "admin.ORGANIZATION_MEMBERSHIP-DELETE", ResourcePath: "organizations/o1/members/u1"}
	ev := req.adminEvent()
	assert.Equal(t, keycloak.ResourceOrganizationMembership, ev.ResourceType)
	assert.Equal(t, "DELETE", ev.OperationType)
	users, err := affectedUsers(t.Context(), nil, ev)
	require.NoError(t, err)
	assert.Equal(t, []string{"u1"}, users)

	for path, want := range map[string][]string{
		"users/u2":                     {"u2"},
		"users/u3/groups/g1":           {"u3"},
		"users/u4/role-mappings/realm": {"u4"},
		"clients/c1":                   nil,
	} {
		typ := keycloak.ResourceUser
		if path == "users/u3/groups/g1" {
			typ = keycloak.ResourceGroupMembership
		}
		if path == "users/u4/role-mappings/realm" {
			typ = keycloak.ResourceRealmRoleMapping
		}
		got, err := affectedUsers(t.Context(), nil, keycloak.AdminEvent{ResourceType: typ, ResourcePath: path})
		require.NoError(t, err)
		assert.Equal(t, want, got, path)
	}
}

func TestBareUserID(t *testing.T) {
	assert.Equal(t, "8f0e", bareUserID(`8f0e`))
	assert.Equal(t, "8f0e", bareUserID(`"8f0e"`))
	assert.Equal(t, "", bareUserID(`{"id":"o1","name":"acme"}`), "an organization representation is not a user id")
	assert.Equal(t, "", bareUserID(``))
}

func TestWatcherPosition(t *testing.T) {
	p := position{at: 1700000000123, ids: map[string]bool{"b": true, "a": true}}
	s := p.String()
	assert.Equal(t, "1700000000123|a,b", s)
	back, err := parsePosition(s)
	require.NoError(t, err)
	assert.Equal(t, p, back)
	_, err = parsePosition("garbage")
	assert.Error(t, err)
	_ = time.Now()
}
