package orgsync

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
)

func freshBody(user string) string {
	return fmt.Sprintf(`{"user_ids":[%q],"time":%d}`, user, time.Now().UnixMilli())
}

// unsignedCall posts body with a wrong signature, or none.
func unsignedCall(h *harness, conf any, body, signature string) int {
	headers := map[string]string{"Content-Length": fmt.Sprint(len(body))}
	if signature != "" {
		headers["X-Keycloak-Signature"] = signature
	}
	r := runnertest.NewRequest(requestIDs.Add(1), 1, headers)
	r.MethodV = http.MethodPost
	r.BodyV = []byte(body)
	w := httptest.NewRecorder()
	h.plugin.RequestFilter(conf, w, r)
	return w.Code
}

// Anybody can post to the route; only the secret's holder can use up its
// rate limit.
func TestInvalidationFloodDoesNotStarveTheSender(t *testing.T) {
	h := newHarness(t)
	conf := invalidationRoute(t, h, "")
	for i := range 100 {
		sig := ""
		if i%2 == 1 {
			sig = "sha256=" + fmt.Sprintf("%064x", i)
		}
		require.Equal(t, http.StatusUnauthorized, unsignedCall(h, conf, freshBody("u-alice"), sig))
	}
	accepted := freshBody("u-alice")
	code, body := signedCall(t, h, conf, accepted)
	require.Equal(t, http.StatusOK, code, "a signed call after 100 unsigned ones: %s", body)

	// Replays of a captured call do not use up the budget either.
	for range 100 {
		code, _ := signedCall(t, h, conf, accepted)
		require.Equal(t, http.StatusConflict, code)
	}
	code, body = signedCall(t, h, conf, freshBody("u-bob"))
	assert.Equal(t, http.StatusOK, code, "a new signed call after 100 replays: %s", body)
}

// A body accepted on one route is refused on every other route with the
// same secret, and on the same route once APISIX sent its config again.
func TestInvalidationReplayRefusedAcrossRoutesAndReloads(t *testing.T) {
	h := newHarness(t)
	routeA := invalidationRoute(t, h, "")
	routeB := invalidationRoute(t, h, `,"rate_limit":20,"max_age":"1h"`)
	body := freshBody("u-alice")
	code, _ := signedCall(t, h, routeA, body)
	require.Equal(t, http.StatusOK, code)
	code, resp := signedCall(t, h, routeB, body)
	assert.Equal(t, http.StatusConflict, code, "route B: %s", resp)
	assert.Contains(t, resp, ReasonReplayed)

	reloaded := invalidationRoute(t, h, "") // the same config, prepared again
	require.NotSame(t, routeA, reloaded)
	code, resp = signedCall(t, h, reloaded, body)
	assert.Equal(t, http.StatusConflict, code, "after a reload: %s", resp)
}

// A record lasts as long as any route could find its body fresh, not only
// the accepting route's max_age.
func TestInvalidationRecordOutlivesEveryMaxAge(t *testing.T) {
	p := New(Deps{})
	p.deps.Cache = newHarness(t).store
	mac := sha256.Sum256([]byte("body"))
	at := time.Now()
	release, _, _ := p.claimInvalidation(t.Context(), mac, at, at)
	require.NotNil(t, release)
	late := at.Add(maxMaxAge).Add(maxFutureSkew - time.Second)
	release, status, reason := p.claimInvalidation(t.Context(), mac, at, late)
	assert.Nil(t, release)
	assert.Equal(t, http.StatusConflict, status, reason)
	release, _, _ = p.claimInvalidation(t.Context(), mac, at, at.Add(replayHorizon+2*time.Second))
	assert.NotNil(t, release, "forgotten once no route can find it fresh")
}

// A call that was refused for the rate limit or failed leaves no record: its
// sender's retry of the same body is accepted.
func TestInvalidationFailedCallMayBeSentAgain(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme)
	conf := invalidationRoute(t, h, `,"rate_limit":1`)
	for i := range 2 {
		code, _ := signedCall(t, h, conf, freshBody(fmt.Sprintf("u-%d", i)))
		require.Equal(t, http.StatusOK, code)
	}
	limited := freshBody("u-limited")
	code, _ := signedCall(t, h, conf, limited)
	require.Equal(t, http.StatusTooManyRequests, code)
	time.Sleep(1100 * time.Millisecond)
	code, _ = signedCall(t, h, conf, limited)
	assert.Equal(t, http.StatusOK, code, "sent again after a 429")

	time.Sleep(1100 * time.Millisecond)
	h.dir.setFail(errKeycloakDown)
	org := fmt.Sprintf(`{"organization_id":"org-1","time":%d}`, time.Now().UnixMilli())
	code, _ = signedCall(t, h, conf, org)
	require.Equal(t, http.StatusBadGateway, code)
	h.dir.setFail(nil)
	time.Sleep(1100 * time.Millisecond)
	code, body := signedCall(t, h, conf, org)
	assert.Equal(t, http.StatusOK, code, "sent again after Keycloak failed: %s", body)
}

// At its cap the record refuses new calls rather than forget accepted ones.
func TestInvalidationRecordFullRefuses(t *testing.T) {
	h := newHarness(t)
	h.plugin.replays = newReplaySet(2)
	conf := invalidationRoute(t, h, "")
	first := freshBody("u-1")
	for _, b := range []string{first, freshBody("u-2")} {
		code, _ := signedCall(t, h, conf, b)
		require.Equal(t, http.StatusOK, code)
	}
	code, resp := signedCall(t, h, conf, freshBody("u-3"))
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, resp, ReasonReplaySetFull)
	code, _ = signedCall(t, h, conf, first)
	assert.Equal(t, http.StatusConflict, code, "what was accepted is still refused")
	assert.Equal(t, 2, h.plugin.replays.len())

	s := newReplaySet(1)
	now := time.Now()
	require.Equal(t, claimNew, s.claim(sha256.Sum256([]byte("a")), now.Add(time.Second), now))
	require.Equal(t, claimFull, s.claim(sha256.Sum256([]byte("b")), now.Add(time.Second), now))
	assert.Equal(t, claimNew, s.claim(sha256.Sum256([]byte("b")), now.Add(3*time.Second), now.Add(2*time.Second)),
		"room again once an entry expired")
}

// newRedisHarness is a harness whose cache shares the test's Redis under
// prefix: two of them are two runners of one fleet.
func newRedisHarness(t *testing.T, url, prefix string) *harness {
	t.Helper()
	h := newHarness(t)
	store, err := cache.New(t.Context(), &cache.Options{RedisURL: url, KeyPrefix: prefix, OpTimeout: 200 * time.Millisecond,
		ValueSecret: []byte("orgsync test value secret 32 byt")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	h.store = store
	h.plugin = New(Deps{Cache: store, Keycloak: h.dir, Emitter: h.emitter})
	return h
}

// With Redis, a body accepted by one runner is refused by every other; with
// Redis down, a runner cannot know and refuses (503) rather than accept.
func TestInvalidationReplayRefusedAcrossTheFleet(t *testing.T) {
	srv := redistest.Start(t)
	prefix := fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	runner1 := newRedisHarness(t, srv.URL(), prefix)
	runner2 := newRedisHarness(t, srv.URL(), prefix)
	conf1 := invalidationRoute(t, runner1, "")
	conf2 := invalidationRoute(t, runner2, "")

	body := freshBody("u-alice")
	code, resp := signedCall(t, runner1, conf1, body)
	require.Equal(t, http.StatusOK, code, resp)
	code, resp = signedCall(t, runner2, conf2, body)
	assert.Equal(t, http.StatusConflict, code, "the second runner: %s", resp)
	assert.Contains(t, resp, ReasonReplayed)
	code, _ = signedCall(t, runner2, conf2, freshBody("u-bob"))
	assert.Equal(t, http.StatusOK, code, "a new call is accepted by the second runner")

	// A call under way on runner 1 that then fails gives its claim back: the
	// sender's retry is accepted by runner 2, which refused it meanwhile.
	retried := freshBody("u-dave")
	release, _, _ := runner1.plugin.claimInvalidation(t.Context(), conf1.(*Conf).bodyMAC([]byte(retried)),
		time.Now(), time.Now())
	require.NotNil(t, release)
	code, _ = signedCall(t, runner2, conf2, retried)
	require.Equal(t, http.StatusConflict, code, "under way on runner 1")
	release()
	code, resp = signedCall(t, runner2, conf2, retried)
	assert.Equal(t, http.StatusOK, code, "retried after runner 1 failed: %s", resp)

	srv.Kill()
	code, resp = signedCall(t, runner2, conf2, freshBody("u-carol"))
	assert.Equal(t, http.StatusServiceUnavailable, code, resp)
	assert.Contains(t, resp, ReasonReplayUnchecked)
	assert.Equal(t, 2, runner2.plugin.replays.len(), "only what runner 2 accepted is recorded")
}
