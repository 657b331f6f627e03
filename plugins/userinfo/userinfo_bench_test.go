package userinfo

import (
	"net/http/httptest"
	"testing"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// BenchmarkRequestFilter is userinfo's own work for a logged-in user whose
// token verdict is cached, reported against a no-op filter that only reads the
// same headers (x_noop).
func BenchmarkRequestFilter(b *testing.B) {
	is := tokentest.NewIssuer(b)
	p := New(Deps{Keys: testKeys})
	v, _ := p.ParseConf([]byte(`{"issuer":"` + is.URL + `","audience":"apisix","assertion":{"audience":"mitxonline"}}`))
	ui := map[string]any{"sub": "u-alice", "email": "alice@example.org", "name": "Alice", "preferred_username": "alice",
		"organization": map[string]any{"acme": map[string]any{"id": "9d3b7c52-5b8a-4a6e-9f57-0b1c1d1e1f10", "tier": []string{"gold"}}}}
	headers := loggedIn(is, "u-alice", ui)
	headers["accept"] = "text/html"
	headers["user-agent"] = "Mozilla/5.0"
	var floor float64
	b.Run("noop", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			r := runnertest.NewRequest(uint32(i), 7, headers)
			_ = r.Header().Get("X-Userinfo")
		}
		floor = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("userinfo", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r := runnertest.NewRequest(uint32(i), 7, headers)
			w := httptest.NewRecorder()
			p.RequestFilter(v, w, r)
			if w.Code != 200 {
				b.Fatal(w.Body.String())
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/floor, "x_noop")
	})
}
