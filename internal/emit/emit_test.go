package emit

import (
	"encoding/json"
	"net/http"
	"net/textproto"
	"testing"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	libtest "github.com/apache/apisix-go-plugin-runner/pkg/httptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
)

var testKeys = func() *assertion.KeyRing {
	keys, err := assertion.Generate()
	if err != nil {
		panic(err)
	}
	return keys
}()

func proven(t *testing.T, e *Emitter, sub string) identity.Identity {
	t.Helper()
	id, err := identity.New(e.NewLogin(), identity.Claims{"sub": json.RawMessage(`"` + sub + `"`),
		"organization": json.RawMessage(`["acme"]`)}, "https://sso.example.org/realms/r", true)
	require.NoError(t, err)
	return id
}

func headersOf(t *testing.T, e *Emitter, id identity.Identity, route *Route, ref Refresh) map[string]string {
	t.Helper()
	r := runnertest.NewRequest(1, 1, nil)
	require.NoError(t, e.Emit(r.Header(), id, route, ref))
	out := map[string]string{}
	for k := range r.Header().View() {
		out[k] = r.Header().Get(k)
	}
	return out
}

func replays(e *Emitter, id identity.Identity, route *Route, ref Refresh) bool {
	return e.Replay(runnertest.NewRequest(1, 1, nil).Header(), id, route, ref)
}

var (
	orgsHeader = []ClaimHeader{{Header: "X-User-Orgs", Claim: "organization"}}
	appA       = &Assertion{Header: "X-Identity-Assertion", Audience: "app-a", Issuer: "gw", TTL: time.Minute}
)

func TestEqualSettingsShareARoute(t *testing.T) {
	e := New(Options{Keys: testKeys})
	a := e.Route(orgsHeader, appA)
	b := e.Route([]ClaimHeader{{Header: "X-User-Orgs", Claim: "organization"}}, &Assertion{Header: "X-Identity-Assertion",
		Audience: "app-a", Issuer: "gw", TTL: time.Minute})
	assert.Same(t, a, b, "the same route prepared again")
	assert.NotSame(t, a, e.Route(orgsHeader, &Assertion{Header: "X-Identity-Assertion", Audience: "app-b", Issuer: "gw",
		TTL: time.Minute}))
	assert.NotSame(t, a, e.Route(orgsHeader, nil))
}

// A rendering is replayed only for the login, route and refresh it was made
// for: any of them different renders anew.
func TestReplayOnlyWhatDecidesTheOutputAgrees(t *testing.T) {
	e := New(Options{Keys: testKeys})
	route := e.Route(orgsHeader, appA)
	alice := proven(t, e, "u-alice")
	ref := Refresh{Settings: "s1", Source: "keycloak", Value: []byte(`v1`)}
	assert.False(t, replays(e, alice, route, ref), "nothing emitted yet")
	first := headersOf(t, e, alice, route, ref)
	assert.Equal(t, "keycloak", first["X-User-Orgs-Source"])
	assert.True(t, replays(e, alice, route, ref))
	assert.Equal(t, int64(1), e.Signed())

	for name, other := range map[string]func() (identity.Identity, *Route, Refresh){
		"another login of the same user": func() (identity.Identity, *Route, Refresh) { return proven(t, e, "u-alice"), route, ref },
		"another route":                  func() (identity.Identity, *Route, Refresh) { return alice, e.Route(orgsHeader, nil), ref },
		"other refresh settings": func() (identity.Identity, *Route, Refresh) {
			return alice, route, Refresh{Settings: "s2", Source: ref.Source, Value: ref.Value}
		},
		"another source": func() (identity.Identity, *Route, Refresh) {
			return alice, route, Refresh{Settings: ref.Settings, Source: "cache", Value: ref.Value}
		},
		"another value": func() (identity.Identity, *Route, Refresh) {
			return alice, route, Refresh{Settings: ref.Settings, Source: ref.Source, Value: []byte(`v2`)}
		},
		"userinfo's own": func() (identity.Identity, *Route, Refresh) { return alice, route, Refresh{} },
	} {
		id, rt, rf := other()
		assert.False(t, replays(e, id, rt, rf), name)
	}
}

// An identity proven for one request only (login 0) is never replayed: its
// claims were taken as sent, and the next request may send others.
func TestNoLoginNoReplay(t *testing.T) {
	e := New(Options{Keys: testKeys})
	route := e.Route(orgsHeader, nil)
	id, err := identity.New(0, identity.Claims{"sub": json.RawMessage(`"u1"`)}, "", false)
	require.NoError(t, err)
	headersOf(t, e, id, route, Refresh{})
	assert.False(t, replays(e, id, route, Refresh{}))
}

// The assertion is reused until half its ttl, then signed anew.
func TestReuseEndsAtHalfTheTTL(t *testing.T) {
	e := New(Options{Keys: testKeys})
	route := e.Route(nil, &Assertion{Header: "X-Identity-Assertion", Audience: "app", Issuer: "gw", TTL: time.Second})
	id := proven(t, e, "u-alice")
	first := headersOf(t, e, id, route, Refresh{})
	assert.Equal(t, first, headersOf(t, e, id, route, Refresh{}))
	time.Sleep(600 * time.Millisecond)
	assert.False(t, replays(e, id, route, Refresh{}), "past half the ttl")
	assert.NotEqual(t, first["X-Identity-Assertion"], headersOf(t, e, id, route, Refresh{})["X-Identity-Assertion"])
	assert.Equal(t, int64(2), e.Signed())
}

func TestNoKeyNoAssertion(t *testing.T) {
	e := New(Options{})
	r := runnertest.NewRequest(1, 1, nil)
	err := e.Emit(r.Header(), proven(t, e, "u1"), e.Route(nil, appA), Refresh{})
	assert.ErrorIs(t, err, ErrNoSigningKey)
	assert.Empty(t, r.Header().Get("X-Identity-Assertion"))
}

// The proof travels on the request it was attached to, and only there.
func TestProofStaysOnItsRequest(t *testing.T) {
	e := New(Options{})
	r, other := runnertest.NewRequest(1, 1, nil), runnertest.NewRequest(2, 1, nil)
	id := proven(t, e, "u1")
	require.NoError(t, Attach(r, Proof{Identity: id, Route: e.Route(nil, nil)}))
	p, ok := ProofOf(r)
	require.True(t, ok)
	assert.Equal(t, "u1", p.Identity.Subject())
	_, ok = ProofOf(other)
	assert.False(t, ok)
}

// TestRefreshNowIsTheRequestsTime: a caller's Refresh.Now decides reuse as
// the clock would at that time; zero reads the clock.
func TestRefreshNowIsTheRequestsTime(t *testing.T) {
	e := New(Options{Keys: testKeys})
	route := e.Route(orgsHeader, appA)
	id := proven(t, e, "u1")
	now := time.Now()
	headersOf(t, e, id, route, Refresh{Now: now})
	assert.True(t, replays(e, id, route, Refresh{}))
	assert.True(t, replays(e, id, route, Refresh{Now: now.Add(time.Second)}))
	assert.False(t, replays(e, id, route, Refresh{Now: now.Add(time.Hour)}), "past the reuse at the caller's time")
	e.now = func() time.Time { return now.Add(time.Hour) }
	assert.False(t, replays(e, id, route, Refresh{}), "zero: the emitter's clock")
	assert.True(t, replays(e, id, route, Refresh{Now: now}), "the caller's time, not the clock")
}

// Every name a rendering writes is canonical, configured in any case or
// not: write hands them to the runner library as they are. Through the
// library's own request, a client's lower-case copies are replaced.
func TestRenderedNamesAreCanonical(t *testing.T) {
	e := New(Options{Keys: testKeys})
	route := e.Route([]ClaimHeader{{Header: "x-user-orgs", Claim: "organization"}, {Header: "X-USER-ID", Claim: "sub"}},
		&Assertion{Header: "x-identity-assertion", Audience: "app", Issuer: "gw", TTL: time.Minute})
	id := proven(t, e, "u1")
	ref := Refresh{Source: "keycloak"}
	out, err := e.render(id, route, ref)
	require.NoError(t, err)
	for _, kv := range out.headers {
		assert.Equal(t, textproto.CanonicalMIMEHeaderKey(kv[0]), kv[0])
	}

	frame := libtest.NewRequestFrame(1, 1, "/", [][2]string{{"x-user-orgs", "forged"}, {"x-user-id", "forged"}})
	answer := libtest.ParseAnswer(libtest.ServeFrame(nil, frame, func(_ http.ResponseWriter, r pkgHTTP.Request) {
		require.NoError(t, e.Emit(r.Header(), id, route, ref))
	}))
	require.True(t, answer.Rewrite)
	got := map[string]string{}
	for _, h := range answer.Headers {
		got[h.Name] = h.Value
	}
	assert.Equal(t, "acme", got["X-User-Orgs"])
	assert.Equal(t, "u1", got["X-User-Id"])
	assert.NotEmpty(t, got["X-Identity-Assertion"])
	assert.Len(t, answer.Headers, len(out.headers), "one entry per header: %v", answer.Headers)
}
