//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

var bodySeq atomic.Int64

// invalidationBody is a signed-able invalidation call of exactly size bytes
// (JSON, padded with spaces; dated now and unique, as the route refuses old
// and replayed calls), or the bare padding when size is too small.
func invalidationBody(size int) []byte {
	b := []byte(fmt.Sprintf(`{"user_ids":["no-such-user-frames-test"],"time":%d,"seq":%d}`,
		time.Now().UnixMilli(), bodySeq.Add(1)))
	if size < len(b) {
		return bytes.Repeat([]byte{' '}, size)
	}
	return append(b, bytes.Repeat([]byte{' '}, size-len(b))...)
}

// postRaw posts body to the invalidation route with exactly the headers
// given plus a valid signature, and no Content-Length unless given.
func postRaw(t *testing.T, r *runner, route *apisix.Route, body []byte, h http.Header) *apisix.Result {
	t.Helper()
	h = h.Clone()
	h.Set("Content-Type", "application/json")
	h.Set("X-Keycloak-Signature", sign(body))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.gw.Do(ctx, route, &apisix.Request{Method: http.MethodPost, Path: "/hooks/keycloak", Header: h, Body: body})
	require.NoError(t, err)
	return res
}

// TestInvalidationBodiesFromZeroToOneMegabyte posts bodies the way APISIX
// hands them to the runner (one ExtraInfo answer, one frame header and the
// whole body in one write) with and without Content-Length: the route reads
// a body only when its declared length is within the cap, never parses a
// body as frames, and the runner keeps serving on the same connections.
func TestInvalidationBodiesFromZeroToOneMegabyte(t *testing.T) {
	e := baseEnv(t, kctest.Env(t).URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	r := startRunner(t, e)
	hook := newRoute(orgsyncConf(`{"invalidate":true,"secret_env":"ORGSYNC_WEBHOOK_SECRET","rate_limit":1000}`))

	// A call the route accepts, to check the connection after each case.
	followUp := func(t *testing.T, after string) {
		t.Helper()
		small := invalidationBody(100)
		res := postRaw(t, r, hook, small, http.Header{"Content-Length": {"100"}})
		require.Equal(t, 200, res.Status, "the call after %s: body %s, err %v", after, res.Body, res.Err)
		assert.Contains(t, string(res.Body), "no-such-user-frames-test")
	}
	followUp(t, "start")
	dials := r.gw.Dials()

	const limit = 64 << 10
	for _, size := range []int{0, 1 << 10, limit, limit + 1, 219 << 10, 220 << 10, 512 << 10, 1 << 20} {
		body := invalidationBody(size)
		t.Run(fmt.Sprintf("%d bytes with Content-Length", size), func(t *testing.T) {
			res := postRaw(t, r, hook, body, http.Header{"Content-Length": {strconv.Itoa(size)}})
			switch {
			case size == 0:
				// Read, signature good, not a JSON object.
				assert.Equal(t, 400, res.Status, "body %s", res.Body)
				assert.Equal(t, "bad_request", reasonOf(t, res))
				assert.Equal(t, 1, res.ExtraInfoCalls)
			case size <= limit:
				assert.Equal(t, 200, res.Status, "body %s", res.Body)
				assert.Equal(t, 1, res.ExtraInfoCalls)
			default:
				assert.Equal(t, 413, res.Status, "body %s", res.Body)
				assert.Equal(t, "body_too_large", reasonOf(t, res))
				assert.Zero(t, res.ExtraInfoCalls, "the body was asked for")
			}
			followUp(t, "this body")
		})
		t.Run(fmt.Sprintf("%d bytes without Content-Length", size), func(t *testing.T) {
			res := postRaw(t, r, hook, body, http.Header{})
			assert.Equal(t, 411, res.Status, "body %s", res.Body)
			assert.Equal(t, "length_required", reasonOf(t, res))
			assert.Zero(t, res.ExtraInfoCalls, "the body was asked for")
			followUp(t, "this body")
		})
	}

	crafted, err := apisix.InjectionBody(220 << 10)
	require.NoError(t, err)
	for name, h := range map[string]http.Header{
		"with Content-Length":    {"Content-Length": {strconv.Itoa(len(crafted))}},
		"without Content-Length": {},
		"chunked":                {"Transfer-Encoding": {"chunked"}},
		"chunked with a length":  {"Transfer-Encoding": {"chunked"}, "Content-Length": {"100"}},
	} {
		t.Run("body carrying a PrepareConf frame, "+name, func(t *testing.T) {
			res := postRaw(t, r, hook, crafted, h)
			assert.Contains(t, []int{411, 413}, res.Status, "body %s", res.Body)
			assert.Zero(t, res.ExtraInfoCalls, "the body was asked for")
			followUp(t, "the crafted body")
		})
	}

	assert.Equal(t, dials, r.gw.Dials(), "a connection was closed or carried stray frames")
	select {
	case <-r.Exited():
		t.Fatalf("the runner exited")
	default:
	}
	require.NoError(t, r.Stop()) // drains the output pipe
	assert.NotContains(t, r.Output(), apisix.PlantedPlugin, "the runner parsed a frame out of a body")
}

// TestRepeatedIdentityHeaderCarriesOnlyTheRunnersValue: a client sends an
// identity header twice (its true value first, a forged one after, or the
// name in two letter cases). The upstream must see exactly the runner's
// value, or the request must be refused; never the forged extra value.
func TestRepeatedIdentityHeaderCarriesOnlyTheRunnersValue(t *testing.T) {
	r := startRunner(t, baseEnv(t, kctest.Env(t).URL))
	user := kctest.CreateUser(t, "dup")
	kctest.AddMember(t, "acme", user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""))

	base := r.do(t, route, headersOf(sess))
	require.Equal(t, 200, base.Status, "body %s", base.Body)
	want := map[string]string{
		"X-User-Orgs":  base.UpstreamHeader.Get("X-User-Orgs"),
		"X-User-Id":    base.UpstreamHeader.Get("X-User-Id"),
		"X-User-Email": base.UpstreamHeader.Get("X-User-Email"),
	}
	require.Equal(t, "acme", want["X-User-Orgs"])
	require.Equal(t, user.ID, want["X-User-Id"])
	forged := map[string]string{"X-User-Orgs": "globex", "X-User-Id": "someone-else", "X-User-Email": "root@example.org"}

	for name, trusted := range want {
		lower, upper := strings.ToLower(name), strings.ToUpper(name)
		for spelling, h := range map[string]http.Header{
			"twice":            {name: {trusted, forged[name]}},
			"two letter cases": {lower: {trusted}, upper: {forged[name]}},
		} {
			t.Run(name+" "+spelling, func(t *testing.T) {
				// The Gateway merges letter cases in map order: repeat so the
				// true value comes first in some tries.
				for try := 0; try < 6; try++ {
					hh := h.Clone()
					for k, v := range headersOf(sess) {
						hh.Set(k, v)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					res, err := r.gw.Do(ctx, route, &apisix.Request{Method: http.MethodGet, Path: "/app", Header: hh, SrcIP: "192.0.2.10"})
					cancel()
					require.NoError(t, err)
					if res.Status == http.StatusBadRequest {
						assert.Equal(t, "duplicate_identity_header", reasonOf(t, res))
						assert.False(t, res.Upstream)
						continue
					}
					require.Equal(t, 200, res.Status, "body %s", res.Body)
					assert.Equal(t, []string{trusted}, res.UpstreamHeader.Values(name),
						"the upstream must get exactly the runner's value")
				}
			})
		}
	}
}
