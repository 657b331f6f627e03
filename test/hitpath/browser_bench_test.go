// Package hitpath measures and tests userinfo and orgsync together on the
// runner library's own Request: the chain a route runs, which neither
// plugin's tests may build since plugins never import each other.
package hitpath

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	runnertest "github.com/apache/apisix-go-plugin-runner/pkg/httptest"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/userinfo"
)

// testKeys sign the assertions of this package's tests.
var testKeys = func() *assertion.KeyRing {
	keys, err := assertion.Generate()
	if err != nil {
		panic(err)
	}
	return keys
}()

// browserChain is userinfo then orgsync on the runner library's own pooled
// Request (pkg/httptest.ServeFrame), fed the frame APISIX sends for a
// browser's request after openid-connect (issue 18): 14 headers, a 1.8 KB
// session cookie, X-Userinfo, X-Access-Token and X-ID-Token of the sizes a
// Keycloak login gives.
type browserChain struct {
	frame            []byte
	userinfo, orgs   runnertest.Filter
	noop             runnertest.Filter
	wantUser, wantOr string
}

func newBrowserChain(tb testing.TB) *browserChain {
	is := tokentest.NewIssuer(tb)
	const sub = "8f0e2b7c-1d3a-4c5b-9e6f-7a8b9c0d1e2f"
	org := map[string]any{"acme": map[string]any{"id": "9d3b7c52-5b8a-4a6e-9f57-0b1c1d1e1f10"}}
	profile := map[string]any{"sub": sub, "email": "alice@example.org", "email_verified": true, "name": "Alice Example",
		"preferred_username": "alice", "given_name": "Alice", "family_name": "Example", "organization": org}
	claims := is.Claims(sub)
	for k, v := range profile {
		claims[k] = v
	}
	claims["sid"] = "6c1e3f4a-9b2d-4e8f-a1c3-5d7e9f0b2a4c"
	claims["azp"] = "apisix"
	claims["scope"] = "openid email profile organization"
	claims["realm_access"] = map[string]any{"roles": []string{"default-roles-olapps", "offline_access", "uma_authorization"}}
	claims["resource_access"] = map[string]any{"account": map[string]any{"roles": []string{"manage-account", "manage-account-links", "view-profile"}}}
	claims["allowed-origins"] = []string{"https://app.example.org"}
	claims["session_state"] = claims["sid"]
	claims["acr"] = "1"
	claims["typ"] = "Bearer"
	ui, err := json.Marshal(profile)
	require.NoError(tb, err)
	idt := map[string]any{"aud": "apisix", "typ": "ID", "at_hash": "x4kT3v9QmN1p0YcGHqKz1g", "nonce": "b2f7c1e0a9d84e6f"}
	for k, v := range claims {
		if _, ok := idt[k]; !ok && k != "scope" && k != "realm_access" && k != "resource_access" && k != "allowed-origins" {
			idt[k] = v
		}
	}
	idToken, err := json.Marshal(idt)
	require.NoError(tb, err)
	headers := [][2]string{
		{"host", "app.example.org"},
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
		{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		{"accept-encoding", "gzip, deflate, br, zstd"},
		{"accept-language", "en-US,en;q=0.5"},
		{"cookie", "session=" + strings.Repeat("Qm9keU9mQVNlc3Npb24", 96)},
		{"x-forwarded-for", "198.51.100.7"},
		{"x-forwarded-proto", "https"},
		{"x-forwarded-host", "app.example.org"},
		{"x-forwarded-port", "443"},
		{"x-request-id", "3f2a1c9e8b7d4e6f9a0b1c2d3e4f5a6b"},
		{"x-userinfo", base64.StdEncoding.EncodeToString(ui)},
		{"x-access-token", is.Sign(claims)},
		{"x-id-token", base64.StdEncoding.EncodeToString(idToken)},
	}
	store, err := cache.New(context.Background(), &cache.Options{})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = store.Close() })
	em := emit.New(emit.Options{Keys: testKeys})
	p := userinfo.New(userinfo.Deps{Emitter: em})
	uconf, err := p.ParseConf([]byte(`{"issuer":"` + is.URL + `","audience":"apisix","assertion":{"audience":"mitxonline"}}`))
	require.NoError(tb, err)
	o := orgsync.New(orgsync.Deps{Cache: store, Keycloak: benchDirectory{issuer: is.URL}, Emitter: em})
	oconf, err := o.ParseConf([]byte(`{"fresh_ttl":"1h","stale_ttl":"1h"}`))
	require.NoError(tb, err)
	return &browserChain{
		frame:    runnertest.NewRequestFrame(1, 7, "/app", headers),
		userinfo: func(w http.ResponseWriter, r pkgHTTP.Request) { p.RequestFilter(uconf, w, r) },
		orgs:     func(w http.ResponseWriter, r pkgHTTP.Request) { o.RequestFilter(oconf, w, r) },
		noop:     func(w http.ResponseWriter, r pkgHTTP.Request) { _ = r.Header().Get("X-Userinfo") },
		wantUser: sub, wantOr: "acme,globex",
	}
}

// BenchmarkBrowserRequest is userinfo, and userinfo then orgsync (an
// in-process hit of both, the assertion on), over the runner library's
// request for a browser's request, against a no-op that reads X-Userinfo
// (x_noop). Allocations are per request, the library's included.
func BenchmarkBrowserRequest(b *testing.B) {
	c := newBrowserChain(b)
	out := make([]byte, 0, 16<<10)
	check := func(b *testing.B, out []byte, orgs bool) {
		a := runnertest.ParseAnswer(out)
		if a.Stop || !a.Rewrite {
			b.Fatalf("not served: %+v", a)
		}
		found := false
		for _, h := range a.Headers {
			if h.Name == "X-User-Orgs" {
				found = !orgs || h.Value == c.wantOr
			}
		}
		if !found {
			b.Fatalf("no X-User-Orgs %q in %+v", c.wantOr, a.Headers)
		}
	}
	var floor float64
	b.Run("noop", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			out = runnertest.ServeFrame(out[:0], c.frame, c.noop)
		}
		floor = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("userinfo", func(b *testing.B) {
		check(b, runnertest.ServeFrame(out[:0], c.frame, c.userinfo), false)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			out = runnertest.ServeFrame(out[:0], c.frame, c.userinfo)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/floor, "x_noop")
	})
	b.Run("userinfo+orgsync", func(b *testing.B) {
		check(b, runnertest.ServeFrame(out[:0], c.frame, c.userinfo, c.orgs), true)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			out = runnertest.ServeFrame(out[:0], c.frame, c.userinfo, c.orgs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/floor, "x_noop")
	})
}

// benchDirectory is a Keycloak in which every user is in acme and globex.
type benchDirectory struct{ issuer string }

func (d benchDirectory) Realm() string  { return "test" }
func (d benchDirectory) Issuer() string { return d.issuer }
func (benchDirectory) User(_ context.Context, id string) (*keycloak.User, error) {
	return &keycloak.User{ID: id, Enabled: true}, nil
}
func (benchDirectory) UserOrganizations(context.Context, string) ([]keycloak.Organization, error) {
	return []keycloak.Organization{{ID: "9d3b7c52-5b8a-4a6e-9f57-0b1c1d1e1f10", Name: "Acme", Alias: "acme", Enabled: true},
		{ID: "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9", Name: "Globex", Alias: "globex", Enabled: true}}, nil
}
func (benchDirectory) UserGroups(context.Context, string) ([]string, error)     { return nil, nil }
func (benchDirectory) UserRealmRoles(context.Context, string) ([]string, error) { return nil, nil }
func (benchDirectory) UserClientRoles(context.Context, string) (map[string][]string, error) {
	return nil, nil
}
func (benchDirectory) OrganizationMemberGroups(context.Context, string, string) ([]string, error) {
	return nil, nil
}
func (benchDirectory) OrganizationGroupsSupported(context.Context) (bool, error) { return false, nil }
func (benchDirectory) UserIDByUsername(context.Context, string) (string, error)  { return "", nil }
func (benchDirectory) OrganizationMemberIDs(context.Context, string) ([]string, error) {
	return nil, nil
}
func (benchDirectory) OrganizationMemberPage(context.Context, string, int) ([]string, bool, error) {
	return nil, false, nil
}
func (benchDirectory) AdminEvents(context.Context, keycloak.AdminEventQuery) ([]keycloak.AdminEvent, error) {
	return nil, nil
}

// BenchmarkBrowserRequestColdCache is BenchmarkBrowserRequest with the CPU's
// caches emptied before each request (an 8 MiB buffer written, off the
// clock), as they are in the runner between two requests: the kernel's
// socket work and the client run on the same two cores. It shows why the
// plugins cost more in the runner than in the warm benchmark above.
func BenchmarkBrowserRequestColdCache(b *testing.B) {
	c := newBrowserChain(b)
	out := make([]byte, 0, 16<<10)
	evict := make([]byte, 8<<20)
	for _, tc := range []struct {
		name  string
		chain []runnertest.Filter
	}{{"noop", []runnertest.Filter{c.noop}}, {"userinfo", []runnertest.Filter{c.userinfo}},
		{"userinfo+orgsync", []runnertest.Filter{c.userinfo, c.orgs}}} {
		b.Run(tc.name, func(b *testing.B) {
			out = runnertest.ServeFrame(out[:0], c.frame, tc.chain...)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := 0; j < len(evict); j += 64 {
					evict[j]++
				}
				b.StartTimer()
				out = runnertest.ServeFrame(out[:0], c.frame, tc.chain...)
			}
		})
	}
}

// BenchmarkBrowserRequestParallel is BenchmarkBrowserRequest served on every
// P at once (one user, so every request reads the same cache entries), as
// the runner serves many connections: what the chain's shared state costs
// when two cores touch it (compare ns/op with the serial benchmark's divided
// by GOMAXPROCS).
func BenchmarkBrowserRequestParallel(b *testing.B) {
	c := newBrowserChain(b)
	for _, tc := range []struct {
		name    string
		filters []runnertest.Filter
	}{
		{"noop", []runnertest.Filter{c.noop}},
		{"userinfo", []runnertest.Filter{c.userinfo}},
		{"userinfo+orgsync", []runnertest.Filter{c.userinfo, c.orgs}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				out := make([]byte, 0, 16<<10)
				for pb.Next() {
					out = runnertest.ServeFrame(out[:0], c.frame, tc.filters...)
				}
			})
		})
	}
}
