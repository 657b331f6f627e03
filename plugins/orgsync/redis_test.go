package orgsync

import (
	"encoding/binary"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
)

// Whoever can write the fleet's Redis (and holds no value secret) writes a user's snapshot:
// roles, groups and an active account for a disabled user. orgsync on a fresh process (nothing
// in its in-process tier) serves Keycloak's answer instead, because the cache refuses the value.
func TestForgedSnapshotInRedisIsNotServed(t *testing.T) {
	srv := redistest.Start(t)
	h := newRedisHarness(t, srv.URL(), "")
	o, err := redis.ParseURL(srv.URL())
	require.NoError(t, err)
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	forge := func(key, snap string) {
		// The envelope values had before they were sealed: version 1, fetch time, value.
		b := make([]byte, 9+len(snap))
		b[0] = 1
		binary.BigEndian.PutUint64(b[1:9], uint64(time.Now().UnixMilli()))
		copy(b[9:], snap)
		require.NoError(t, rdb.Set(t.Context(), "apisix-identity:v:"+key, b, time.Hour).Err())
	}

	h.dir.addUser("u-alice", true, acme)
	forge(cacheKey(testRealm, "u-alice", true, true, true),
		`{"account":"active","orgs":[],"groups":["/admins"],"roles":["realm-admin"]}`)
	_, r := h.do(h.route(`{"claims":["organization","groups","roles"]}`), login("u-alice"), nil)
	ui, err := identity.DecodeUserinfo(r.Header().Get(identity.HeaderUserinfo), 0)
	require.NoError(t, err)
	assert.JSONEq(t, `{"roles":["course-admin"]}`, string(ui["realm_access"]), "Keycloak's roles, not the forged ones")
	assert.JSONEq(t, `["/staff"]`, string(ui["groups"]), "Keycloak's groups, not the forged ones")
	assert.Equal(t, SourceKeycloak, r.Header().Get(identity.HeaderOrgsSource))

	h.dir.addUser("u-off", false, acme)
	forge(cacheKey(testRealm, "u-off", true, false, false), `{"account":"active","orgs":[]}`)
	w, _ := h.do(h.route(`{}`), login("u-off"), nil)
	assert.Equal(t, http.StatusUnauthorized, w.Code, "a disabled account stays refused")
}
