package userinfo

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// A login proven on a route with one audience is not proven on a route with
// another: the session cache is shared by every route of the process, and a
// token issued to one client must still be refused where another client is
// required.
func TestSessionIsKeptPerAudience(t *testing.T) {
	is := tokentest.NewIssuer(t)
	p := New(Deps{Emitter: newEmitter()})
	mine := newRouteOf(t, p, confFor(is, "")) // audience "apisix": the token's azp
	other := newRouteOf(t, p, strings.Replace(confFor(is, ""), `"audience":"apisix"`, `"audience":"billing"`, 1))
	headers := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice"})

	w, _ := mine.do(headers)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	for range 2 {
		w, r := other.do(headers)
		assert.Equal(t, http.StatusUnauthorized, w.Code)
		assert.Contains(t, w.Body.String(), "token_wrong_audience")
		assert.Empty(t, r.Header().Get("X-Identity-Assertion"))
	}
	w, _ = mine.do(headers)
	assert.Equal(t, http.StatusOK, w.Code, "the first route's session is intact")
}

// Nor is it proven on a route trusting another issuer (another realm or
// Keycloak): the same headers are verified again there, and refused.
func TestSessionIsKeptPerVerifier(t *testing.T) {
	realmA, realmB := tokentest.NewIssuer(t), tokentest.NewIssuer(t)
	p := New(Deps{Emitter: newEmitter()})
	routeA := newRouteOf(t, p, confFor(realmA, ""))
	routeB := newRouteOf(t, p, confFor(realmB, ""))
	headers := loggedIn(realmA, "u-alice", map[string]any{"sub": "u-alice"})

	w, _ := routeA.do(headers)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	w, r := routeB.do(headers)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	assert.Contains(t, w.Body.String(), "token_wrong_issuer")
	assert.Empty(t, r.Header().Get("X-User-Id"))
}

// One login on two routes with different emission settings: each route
// writes its own headers and an assertion for its own audience, however the
// requests alternate. A reused rendering is only ever a route's own.
func TestRenderingIsNotReusedAcrossRouteSettings(t *testing.T) {
	is := tokentest.NewIssuer(t)
	p := New(Deps{Emitter: newEmitter()})
	routeA := newRouteOf(t, p, fmt.Sprintf(`{"issuer":%q,"audience":"apisix","assertion":{"audience":"app-a","ttl":"60s"},"claim_headers":{"X-User-Id":"sub"}}`, is.URL))
	routeB := newRouteOf(t, p, fmt.Sprintf(`{"issuer":%q,"audience":"apisix","assertion":{"audience":"app-b","ttl":"60s"},"claim_headers":{"X-Mail":"email"}}`, is.URL))
	headers := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice", "email": "alice@example.org"})

	for i := range 3 {
		w, r := routeA.do(headers)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Equal(t, "app-a", verifyAssertion(t, r.Header().Get("X-Identity-Assertion"))["aud"], "request %d", i)
		assert.Equal(t, "u-alice", r.Header().Get("X-User-Id"))
		assert.Empty(t, r.Header().Get("X-Mail"))

		w, r = routeB.do(headers)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Equal(t, "app-b", verifyAssertion(t, r.Header().Get("X-Identity-Assertion"))["aud"], "request %d", i)
		assert.Equal(t, "alice@example.org", r.Header().Get("X-Mail"))
		assert.Empty(t, r.Header().Get("X-User-Id"))
	}
}
