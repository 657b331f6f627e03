package userinfo

import (
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

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// TestKeptValuesOutliveTheirRequest: userinfo reads the request's headers
// as views of the frame (the runner library's header views), which die with
// the request. With the library poisoning every frame when its request ends,
// requests of several users run concurrently through the library's pooled
// Request, each on a frame of its own; every request gets its own user, and
// what userinfo kept across requests (the session cache's entries, found
// again by the key of the original header bytes, and the identities in
// them) still holds the original values. Keeping a view instead of a copy
// fails it: the kept bytes are overwritten (and -race sees the poisoning
// write against a later read). test/hitpath runs userinfo then orgsync the
// same way and checks what the upstream gets.
func TestKeptValuesOutliveTheirRequest(t *testing.T) {
	runnertest.PoisonViews(true)
	defer runnertest.PoisonViews(false)

	is := tokentest.NewIssuer(t)
	em := emit.New(emit.Options{Keys: testKeys})
	p := New(Deps{Emitter: em})
	v, err := p.ParseConf([]byte(`{"issuer":"` + is.URL + `","audience":"apisix","assertion":{"audience":"mitxonline"}}`))
	require.NoError(t, err)
	conf := v.(*Conf)
	userinfo := func(w http.ResponseWriter, r pkgHTTP.Request) { p.RequestFilter(conf, w, r) }

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
				out = runnertest.ServeFrame(out[:0], frame, userinfo)
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
