// Benchmarks added by apisix-identity-runner (PATCHES.md): the per-request
// cost of reading the headers and building the change set, for the headers
// APISIX sends after openid-connect.

package http

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/apache/apisix-go-plugin-runner/internal/util"
)

// oidcHeaders are the 14 headers an HTTPReqCall carries on a logged-in
// route after openid-connect, with realistic sizes: the session cookie,
// X-Userinfo (~1 KB base64 JSON), X-Access-Token (~1.2 KB JWT), X-ID-Token.
func oidcHeaders() []pair {
	jwt := func(n int) string {
		return "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." +
			base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat(`{"k":"v"}`, n/12))) + ".c2ln"
	}
	return []pair{
		{"host", "app.example.org"},
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"},
		{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		{"accept-language", "en-US,en;q=0.5"},
		{"accept-encoding", "gzip, deflate, br"},
		{"cookie", "session=" + strings.Repeat("A", 900) + "; session_2=" + strings.Repeat("B", 300)},
		{"x-forwarded-for", "198.51.100.7"},
		{"x-forwarded-proto", "https"},
		{"x-real-ip", "198.51.100.7"},
		{"x-request-id", "3f2a1c9e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"},
		{"x-userinfo", base64.StdEncoding.EncodeToString([]byte(strings.Repeat(`{"sub":"u"}`, 70)))},
		{"x-access-token", jwt(1200)},
		{"x-id-token", jwt(900)},
		{"sec-fetch-mode", "navigate"},
	}
}

// BenchmarkHeaderAndFetchChanges is what every request through a plugin
// like userinfo pays in the library: the headers read into a Header, four
// identity headers stripped and set, and the Rewrite built.
func BenchmarkHeaderAndFetchChanges(b *testing.B) {
	buf := buildReq(reqOpt{path: "/app", headers: oidcHeaders()})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := CreateRequest(buf)
		h := r.Header()
		if len(h.Get("X-Access-Token")) < 1000 {
			b.Fatal("headers not read")
		}
		h.Del("X-Id-Token")
		h.Set("X-User-Id", "8f0e2b7c-1d3a-4c5b-9e6f-7a8b9c0d1e2f")
		h.Set("X-User-Email", "alice@example.org")
		h.Set("X-User-Orgs", "acme,globex")
		builder := util.GetBuilder()
		if !r.FetchChanges(r.ID(), builder) {
			b.Fatal("no changes")
		}
		util.PutBuilder(builder)
		ReuseRequest(r)
	}
}

// BenchmarkHeaderOnly reads the headers and builds a change set with no
// change, the floor of the above.
func BenchmarkHeaderOnly(b *testing.B) {
	buf := buildReq(reqOpt{path: "/app", headers: oidcHeaders()})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := CreateRequest(buf)
		_ = r.Header().Get("X-Userinfo")
		builder := util.GetBuilder()
		r.FetchChanges(r.ID(), builder)
		util.PutBuilder(builder)
		ReuseRequest(r)
	}
}
