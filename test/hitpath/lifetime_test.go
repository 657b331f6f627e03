package hitpath

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	runnertest "github.com/apache/apisix-go-plugin-runner/pkg/httptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/userinfo"
)

// TestKeptValuesOutliveTheirRequest: both plugins read the request's
// headers as views of the frame, which die with the request. With the
// library poisoning every frame when its request ends, six users' requests
// run concurrently through the library's pooled Request, userinfo then
// orgsync, each on a frame of its own, and each is answered with its own
// user and organizations. Then the issuer's JWKS endpoint goes down and
// every user comes once more, traced: each must still get their own
// X-User-Id and X-User-Orgs, and no request may verify its token again (no
// "userinfo verify token" span), so every one was served from the session
// userinfo kept. A kept identity or organization list that was a view would
// show here as another user's or poisoned values. A session whose key bytes
// are a view is not caught here (checked: the chain still passes with that
// swap): plugins/userinfo's test of the same name, which reads the session
// cache, holds that.
// plugins/userinfo has the userinfo-only test that looks at the session
// cache itself.
func TestKeptValuesOutliveTheirRequest(t *testing.T) {
	runnertest.PoisonViews(true)
	defer runnertest.PoisonViews(false)

	is := tokentest.NewIssuer(t)
	em := emit.New(emit.Options{Keys: testKeys})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	p := userinfo.New(userinfo.Deps{Emitter: em, Tracer: tp.Tracer("hitpath")})
	uconf, err := p.ParseConf([]byte(`{"issuer":"` + is.URL + `","audience":"apisix","assertion":{"audience":"mitxonline"}}`))
	require.NoError(t, err)
	store, err := cache.New(context.Background(), &cache.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	o := orgsync.New(orgsync.Deps{Cache: store, Keycloak: userDirectory{benchDirectory{issuer: is.URL}}, Emitter: em})
	oconf, err := o.ParseConf([]byte(`{"fresh_ttl":"1h","stale_ttl":"1h"}`))
	require.NoError(t, err)
	chain := []runnertest.Filter{
		func(w http.ResponseWriter, r pkgHTTP.Request) { p.RequestFilter(uconf, w, r) },
		func(w http.ResponseWriter, r pkgHTTP.Request) { o.RequestFilter(oconf, w, r) },
	}

	type user struct{ sub, orgs string }
	users := make([]user, 6)
	frames := make([][]byte, len(users))
	traced := make([][]byte, len(users)) // the same request, sampled
	for i := range users {
		sub := fmt.Sprintf("user-%d", i)
		profile := map[string]any{"sub": sub, "email": sub + "@example.org"}
		claims := is.Claims(sub)
		for k, v := range profile {
			claims[k] = v
		}
		ui, err := json.Marshal(profile)
		require.NoError(t, err)
		users[i] = user{sub: sub, orgs: userOrgs(sub)}
		headers := [][2]string{{"host", "app.example.org"}, {"cookie", "session=s" + sub},
			{"x-userinfo", base64.StdEncoding.EncodeToString(ui)}, {"x-access-token", is.Sign(claims)}}
		frames[i] = runnertest.NewRequestFrame(uint32(i), 7, "/", headers)
		traced[i] = runnertest.NewRequestFrame(uint32(i), 7, "/",
			append(headers, [2]string{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}))
	}
	// serve runs u's request on a copy of its frame, which the library
	// poisons when the request ends.
	serve := func(out []byte, frames [][]byte, u int) ([]byte, bool) {
		frame := append([]byte(nil), frames[u]...)
		out = runnertest.ServeFrame(out[:0], frame, chain...)
		a := runnertest.ParseAnswer(out)
		if !assert.False(t, a.Stop, "%s refused: %d", users[u].sub, a.Status) {
			return out, false
		}
		ok := assert.Contains(t, a.Headers, runnertest.HeaderChange{Name: "X-User-Id", Value: users[u].sub})
		return out, assert.Contains(t, a.Headers, runnertest.HeaderChange{Name: "X-User-Orgs", Value: users[u].orgs}) && ok
	}

	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var out []byte
			for i := 0; i < 60; i++ {
				var ok bool
				if out, ok = serve(out, frames, (g+i)%len(users)); !ok {
					return
				}
			}
		}(g)
	}
	wg.Wait()

	is.SetDown(true)
	verified := verifySpans(rec)
	var out []byte
	for u := range users {
		out, _ = serve(out, traced, u)
	}
	assert.Equal(t, verified, verifySpans(rec), "tokens verified again after their first request: a kept session did not outlive its request")
}

// verifySpans counts userinfo's token verifications that were traced.
func verifySpans(rec *tracetest.SpanRecorder) int {
	n := 0
	for _, s := range rec.Ended() {
		if s.Name() == "userinfo verify token" {
			n++
		}
	}
	return n
}

// userDirectory is benchDirectory with users in different organizations,
// so that one user's organizations on another's request show: user-N is in
// acme and, when N is even, globex.
type userDirectory struct{ benchDirectory }

func (userDirectory) UserOrganizations(_ context.Context, id string) ([]keycloak.Organization, error) {
	orgs := []keycloak.Organization{{ID: "9d3b7c52-5b8a-4a6e-9f57-0b1c1d1e1f10", Name: "Acme", Alias: "acme", Enabled: true}}
	if userEven(id) {
		orgs = append(orgs, keycloak.Organization{ID: "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9", Name: "Globex", Alias: "globex", Enabled: true})
	}
	return orgs, nil
}

func userEven(id string) bool {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "user-"))
	return err == nil && n%2 == 0
}

// userOrgs is X-User-Orgs for sub in userDirectory.
func userOrgs(sub string) string {
	if userEven(sub) {
		return "acme,globex"
	}
	return "acme"
}
