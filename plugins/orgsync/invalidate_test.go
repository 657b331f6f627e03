package orgsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
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

func signedCall(t *testing.T, h *harness, conf any, body string) (int, string) {
	t.Helper()
	m := hmac.New(sha256.New, []byte(testSecret))
	m.Write([]byte(body))
	r := runnertest.NewRequest(requestIDs.Add(1), 1, map[string]string{"X-Keycloak-Signature": "sha256=" + hex.EncodeToString(m.Sum(nil)),
		"Content-Length": fmt.Sprint(len(body))})
	r.MethodV = http.MethodPost
	r.BodyV = []byte(body)
	w := httptest.NewRecorder()
	h.plugin.RequestFilter(conf, w, r)
	return w.Code, w.Body.String()
}

func invalidationRoute(t *testing.T, h *harness, extra string) any {
	t.Setenv("TEST_ORGSYNC_SECRET", testSecret)
	return h.route(`{"invalidate":true,"secret_env":"TEST_ORGSYNC_SECRET"` + extra + `}`)
}

func TestInvalidationEndpoint(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	h.dir.addUser("u-bob", true, acme)
	conf := invalidationRoute(t, h, "")
	now := time.Now().UnixMilli()

	code, body := signedCall(t, h, conf, fmt.Sprintf(`{"user_ids":["u-alice"],"time":%d}`, now))
	assert.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `{"invalidated":{"user_ids":["u-alice"]}}`, body)

	code, body = signedCall(t, h, conf, fmt.Sprintf(`{"organization_id":"org-1","time":%d}`, now+1))
	assert.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `{"invalidated":{"user_ids":["u-alice","u-bob"]}}`, body)

	code, body = signedCall(t, h, conf, fmt.Sprintf(`{"type":"admin.ORGANIZATION_MEMBERSHIP-DELETE","resourcePath":"organizations/org-1/members/u-bob","time":%d}`, now+2))
	assert.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "u-bob")
}

// A signed body can be replayed only within max_age, and only once.
func TestInvalidationReplayIsRefused(t *testing.T) {
	h := newHarness(t)
	conf := invalidationRoute(t, h, `,"max_age":"1m"`)
	body := fmt.Sprintf(`{"user_ids":["u-alice"],"time":%d}`, time.Now().UnixMilli())
	code, _ := signedCall(t, h, conf, body)
	require.Equal(t, http.StatusOK, code)
	code, resp := signedCall(t, h, conf, body)
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, resp, ReasonReplayed)

	for name, b := range map[string]string{
		"no time":        `{"user_ids":["u-alice"]}`,
		"too old":        fmt.Sprintf(`{"user_ids":["u-alice"],"time":%d}`, time.Now().Add(-2*time.Minute).UnixMilli()),
		"in the future":  fmt.Sprintf(`{"user_ids":["u-alice"],"time":%d}`, time.Now().Add(10*time.Minute).UnixMilli()),
		"time as string": `{"user_ids":["u-alice"],"time":"now"}`,
	} {
		code, resp := signedCall(t, h, conf, b)
		assert.NotEqual(t, http.StatusOK, code, name)
		assert.NotContains(t, resp, "invalidated", name)
	}
}

func TestInvalidationRateLimited(t *testing.T) {
	h := newHarness(t)
	conf := invalidationRoute(t, h, `,"rate_limit":2`)
	limited := 0
	for i := 0; i < 10; i++ {
		code, _ := signedCall(t, h, conf, fmt.Sprintf(`{"user_ids":["u"],"time":%d}`, time.Now().UnixMilli()+int64(i)))
		if code == http.StatusTooManyRequests {
			limited++
		}
	}
	assert.GreaterOrEqual(t, limited, 5, "a burst of 10 against 2/s (burst 4)")
}

func TestInvalidationBadSignature(t *testing.T) {
	h := newHarness(t)
	conf := invalidationRoute(t, h, "")
	body := []byte(fmt.Sprintf(`{"user_ids":["u-alice"],"time":%d}`, time.Now().UnixMilli()))
	r := runnertest.NewRequest(requestIDs.Add(1), 1, map[string]string{"X-Keycloak-Signature": "sha256=00",
		"Content-Length": fmt.Sprint(len(body))})
	r.MethodV = http.MethodPost
	r.BodyV = body
	w := httptest.NewRecorder()
	h.plugin.RequestFilter(conf, w, r)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.JSONEq(t, `{"error":"Unauthorized","reason":"bad_signature"}`, w.Body.String())
	assert.EqualValues(t, 0, h.dir.calls.Load())
}
