package userinfo

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// BenchmarkRequestFilter is userinfo's own work for a logged-in user whose
// token verdict is cached, reported against a no-op filter that only reads the
// same headers (x_noop). The revocation store holds 100 000 revoked
// sessions and subjects of others: the check every request makes is a lookup
// in a full store.
func BenchmarkRequestFilter(b *testing.B) {
	is := tokentest.NewIssuer(b)
	store, err := cache.NewRevocations(nil, cache.RevocationOptions{})
	if err != nil {
		b.Fatal(err)
	}
	until := time.Now().Add(time.Hour)
	for i := 0; i < 50_000; i++ {
		_ = store.Revoke(context.Background(), cache.Revocation{Issuer: is.URL, SessionID: fmt.Sprintf("sid-%d", i), Until: until})
		_ = store.Revoke(context.Background(), cache.Revocation{Issuer: is.URL, Subject: fmt.Sprintf("u-%d", i), At: time.Now(), Until: until})
	}
	empty, err := cache.NewRevocations(nil, cache.RevocationOptions{})
	if err != nil {
		b.Fatal(err)
	}
	p := New(Deps{Emitter: newEmitter(), Revocations: store})
	// pNone is the same plugin with nothing revoked: the store answers
	// before any lookup, today's path for a fleet without logouts.
	pNone := New(Deps{Emitter: newEmitter(), Revocations: empty})
	v, _ := p.ParseConf([]byte(`{"issuer":"` + is.URL + `","audience":"apisix","assertion":{"audience":"mitxonline"}}`))
	ui := map[string]any{"sub": "u-alice", "email": "alice@example.org", "name": "Alice", "preferred_username": "alice",
		"organization": map[string]any{"acme": map[string]any{"id": "9d3b7c52-5b8a-4a6e-9f57-0b1c1d1e1f10", "tier": []string{"gold"}}}}
	claims := is.Claims("u-alice")
	for k, v := range ui {
		claims[k] = v
	}
	claims["sid"] = "sid-alice"
	headers := map[string]string{"x-userinfo": userinfoHeader(ui), "x-access-token": is.Sign(claims)}
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
	var none float64
	b.Run("userinfo, none revoked", func(b *testing.B) {
		vNone, _ := pNone.ParseConf([]byte(`{"issuer":"` + is.URL + `","audience":"apisix","assertion":{"audience":"mitxonline"}}`))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			r := runnertest.NewRequest(uint32(i), 7, headers)
			w := httptest.NewRecorder()
			pNone.RequestFilter(vNone, w, r)
			if w.Code != 200 {
				b.Fatal(w.Body.String())
			}
		}
		none = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(none/floor, "x_noop")
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
		// The revocation check against a full store, over the same
		// plugin with none: what a request pays for the check.
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/none, "x_none_revoked")
	})
}
