package userinfo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	runnertest "github.com/apache/apisix-go-plugin-runner/pkg/httptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
)

// TestKeptValuesOutliveTheirRequest: userinfo reads the request's headers
// as views of the frame (the runner library's header views), which die with
// the request. With the library poisoning every frame when its request ends,
// requests of several users run concurrently through the library's pooled
// Request, userinfo then orgsync, each on a frame of its own; every request
// gets its own user, and what the plugins kept across requests (the
// session cache's entries, found again by the key of the original header
// bytes, and the identities in them) still holds the original values. A
// plugin keeping a view instead of a copy fails it: the kept bytes are
// overwritten (and -race sees the poisoning write against a later read).
func TestKeptValuesOutliveTheirRequest(t *testing.T) {
	runnertest.PoisonViews(true)
	defer runnertest.PoisonViews(false)

	is := tokentest.NewIssuer(t)
	em := emit.New(emit.Options{Keys: testKeys})
	p := New(Deps{Emitter: em})
	v, err := p.ParseConf([]byte(`{"issuer":"` + is.URL + `","audience":"apisix","assertion":{"audience":"mitxonline"}}`))
	require.NoError(t, err)
	conf := v.(*Conf)
	store, err := cache.New(context.Background(), &cache.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	o := orgsync.New(orgsync.Deps{Cache: store, Keycloak: benchDirectory{issuer: is.URL}, Emitter: em})
	oconf, err := o.ParseConf([]byte(`{"fresh_ttl":"1h","stale_ttl":"1h"}`))
	require.NoError(t, err)
	userinfo := func(w http.ResponseWriter, r pkgHTTP.Request) { p.RequestFilter(conf, w, r) }
	orgs := func(w http.ResponseWriter, r pkgHTTP.Request) { o.RequestFilter(oconf, w, r) }

	type user struct{ sub, userinfo, token string }
	users := make([]user, 6)
	frames := make([][]byte, len(users))
	for i := range users {
		sub := fmt.Sprintf("user-%d", i)
		profile := map[string]any{"sub": sub, "email": sub + "@example.org"}
		claims := is.Claims(sub)
		for k, v := range profile {
			claims[k] = v
		}
		ui, err := json.Marshal(profile)
		require.NoError(t, err)
		users[i] = user{sub: sub, userinfo: base64.StdEncoding.EncodeToString(ui), token: is.Sign(claims)}
		frames[i] = runnertest.NewRequestFrame(uint32(i), 7, "/", [][2]string{{"host", "app.example.org"},
			{"cookie", "session=s" + sub}, {"x-userinfo", users[i].userinfo}, {"x-access-token", users[i].token}})
	}

	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var out []byte
			for i := 0; i < 60; i++ {
				u := (g + i) % len(users)
				frame := append([]byte(nil), frames[u]...) // poisoned when its request ends
				out = runnertest.ServeFrame(out[:0], frame, userinfo, orgs)
				a := runnertest.ParseAnswer(out)
				if !assert.False(t, a.Stop, "request %d of %s refused: %d", i, users[u].sub, a.Status) {
					return
				}
				assert.Contains(t, a.Headers, runnertest.HeaderChange{Name: "X-User-Id", Value: users[u].sub})
			}
		}(g)
	}
	wg.Wait()

	for _, u := range users {
		ui, tok := []byte(u.userinfo), []byte(u.token)
		s := p.sessions.get(p.sessions.key(conf.verifier, conf.Audience, ui, tok, nil), ui, tok, nil, time.Now())
		if !assert.NotNil(t, s, "%s: the session kept is not found by its headers' bytes", u.sub) {
			continue
		}
		assert.Equal(t, u.userinfo, s.userinfo)
		assert.Equal(t, u.token, s.token)
		assert.Equal(t, u.sub, s.id.Subject())
		assert.Equal(t, `"`+u.sub+`@example.org"`, string(s.id.Claims()["email"]))
	}
}
