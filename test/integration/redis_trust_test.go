//go:build integration

package integration

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// forgeSnapshot writes snap under orgsync's cache key of the user, as anyone who can write the
// fleet's Redis can, in each form that holds no fleet secret: the envelope of values before they
// were sealed (version 1: fetch time, value), and the sealed form with a MAC of its own making.
func forgeSnapshot(t *testing.T, rdb *redis.Client, key string, snap map[string]any, sealed bool) {
	t.Helper()
	v, err := json.Marshal(snap)
	require.NoError(t, err)
	var b []byte
	if sealed {
		b = make([]byte, 1+8+32+len(v))
		b[0] = 2
		copy(b[41:], v)
		for i := 9; i < 41; i++ {
			b[i] = byte(i)
		}
	} else {
		b = make([]byte, 1+8+len(v))
		b[0] = 1
		copy(b[9:], v)
	}
	binary.BigEndian.PutUint64(b[1:9], uint64(time.Now().UnixMilli()))
	require.NoError(t, rdb.Set(context.Background(), "apisix-identity:v:"+key, b, time.Hour).Err())
}

// Whoever can write Redis writes a snapshot granting a realm role and a group, and one saying a
// disabled account is active. A runner that reads them (a new process: its in-process tier is
// empty) serves neither: it asks Keycloak, and the upstream and the signed assertion get
// Keycloak's answer.
func TestForgedRedisSnapshotsAreNotServed(t *testing.T) {
	s := kctest.Env(t)
	o, err := redis.ParseURL(redisURL(t))
	require.NoError(t, err)
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	e := baseEnv(t, s.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	first := startRunner(t, e)
	rolesRoute := newRoute(userinfoConf(t, `,"claim_headers":{"X-User-Groups":"groups"}`),
		orgsyncConf(`{"claims":["organization","groups","roles"],"fresh_ttl":"5m","stale_ttl":"10m"}`))
	accountRoute := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"5m","stale_ttl":"10m"}`))

	for _, sealed := range []bool{false, true} {
		name := map[bool]string{false: "unsealed", true: "sealed with a made-up MAC"}[sealed]
		t.Run(name, func(t *testing.T) {
			user := kctest.CreateUser(t, "forged")
			sess := kctest.Login(t, user.Username, user.Password)
			require.Equal(t, 200, first.do(t, rolesRoute, headersOf(sess)).Status)
			require.Equal(t, 200, first.do(t, accountRoute, headersOf(sess)).Status)

			prefix := "orgsync:user:" + s.Realm + ":" + user.ID + ":oa"
			forgeSnapshot(t, rdb, prefix+"gr", map[string]any{"account": "active", "orgs": []any{},
				"groups": []string{"/staff/editors"}, "roles": []string{"course-admin"}}, sealed)
			second := startRunner(t, e)
			res := second.do(t, rolesRoute, headersOf(sess))
			require.Equal(t, 200, res.Status, "body %s", res.Body)
			assert.Empty(t, res.UpstreamHeader.Get("X-User-Groups"), "no forged group upstream")
			ui := decodeUserinfo(t, res.UpstreamHeader.Get("X-Userinfo"))
			assert.Equal(t, []any{}, ui["groups"])
			roles, _ := ui["realm_access"].(map[string]any)["roles"].([]any)
			assert.False(t, containsAny(roles, "course-admin"), "no forged role upstream: %v", roles)
			claims := verifyAssertion(t, second, res.UpstreamHeader.Get("X-Identity-Assertion"))
			assert.Equal(t, []any{}, claims["groups"], "nor in the signed assertion")

			kctest.DisableUser(t, user.ID)
			forgeSnapshot(t, rdb, prefix, map[string]any{"account": "active", "orgs": []any{}}, sealed)
			third := startRunner(t, e)
			res = third.do(t, accountRoute, headersOf(sess))
			assert.Equal(t, 401, res.Status, "a disabled account is not made active by Redis")
			assert.Equal(t, "account_disabled", reasonOf(t, res))
		})
	}
}

// A runner given a shared Redis and no value secret refuses to start, saying what is missing:
// without it, whoever can write Redis would decide what the fleet serves.
func TestRedisWithoutValueSecretStopsTheRunner(t *testing.T) {
	for name, secret := range map[string]string{"missing": "", "short": "31 bytes, one short of the mark"} {
		t.Run(name, func(t *testing.T) {
			// A runner that starts serves until killed: the deadline turns that into a failure.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, runnerBinary, "run")
			cmd.Env = []string{"APISIX_LISTEN_ADDRESS=unix:" + t.TempDir() + "/r.sock", "REDIS_URL=" + redisURL(t),
				"REDIS_VALUE_SECRET=" + secret}
			out, err := cmd.CombinedOutput()
			require.Error(t, err, "the runner must not start")
			require.NoError(t, ctx.Err(), "the runner started and served")
			assert.Contains(t, string(out), "REDIS_VALUE_SECRET")
			if secret != "" {
				assert.NotContains(t, string(out), secret, "the secret is not repeated")
			}
		})
	}
}

// The change feed a real runner writes verifies with the key set its JWKS route publishes (what
// an app fetches for the assertion), through the Go reader; an entry appended straight into the
// stream for the same user is skipped.
func TestChangeFeedVerifiesWithTheRunnersKeySet(t *testing.T) {
	s := kctest.Env(t)
	o, err := redis.ParseURL(redisURL(t))
	require.NoError(t, err)
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	const stream = "apisix-identity:feed:orgsync:changes"
	after := fmt.Sprintf("%d-0", time.Now().UnixMilli())
	r := startRunner(t, baseEnv(t, s.URL))
	jwks := r.do(t, newRoute(apisix.PluginConf{Name: "userinfo", Value: `{"jwks":true}`}), nil)
	require.Equal(t, 200, jwks.Status)
	v, err := verify.New(verify.Config{JWKS: jwks.Body, Issuer: "apisix-identity-runner", Audience: "mitxonline"})
	require.NoError(t, err)
	reader, err := verify.NewFeedReader(verify.FeedConfig{Redis: rdb, Verifier: v, Stream: stream, After: after})
	require.NoError(t, err)

	user := kctest.CreateUser(t, "feed")
	sess := kctest.Login(t, user.Username, user.Password)
	kctest.AddMember(t, "acme", user.ID)
	require.Equal(t, 200, r.do(t, newRoute(userinfoConf(t, ""), orgsyncConf(`{}`)), headersOf(sess)).Status)
	forged := map[string]any{"user": user.ID, "added": `["globex"]`, "removed": "[]", "source": "keycloak",
		"at": time.Now().UTC().Format(time.RFC3339Nano)}
	forgedID, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: forged}).Result()
	require.NoError(t, err)

	var mine []verify.Change
	eventually(t, 5*time.Second, "the stream read past the forged entry", func() bool {
		got, err := reader.Read(t.Context(), 1000, 0)
		require.NoError(t, err)
		for _, c := range got {
			if c.User == user.ID {
				mine = append(mine, c)
			}
		}
		return reader.Position() == forgedID || streamIDAfter(reader.Position(), forgedID)
	})
	require.Len(t, mine, 1, "the runner's entry, not the forged one")
	assert.Equal(t, []string{"acme"}, mine[0].Added)
}

// streamIDAfter reports whether stream id a comes after b.
func streamIDAfter(a, b string) bool {
	var am, as, bm, bs int64
	_, _ = fmt.Sscanf(a, "%d-%d", &am, &as)
	_, _ = fmt.Sscanf(b, "%d-%d", &bm, &bs)
	return am > bm || am == bm && as > bs
}
