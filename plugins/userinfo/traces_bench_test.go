package userinfo

import (
	"context"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

// BenchmarkTracing is userinfo's hit path (a login proven before) with
// tracing off, on for a request APISIX did not sample, and on for one it
// sampled (spans recorded in memory, no export). "off" is the path every
// runner without OTEL_* takes; compare it with the same benchmark on the
// commit before traces (git stash the Tracer lines, or
// BenchmarkRequestFilter/userinfo,_none_revoked on both commits):
//
//	go test -run '^$' -bench 'Tracing|RequestFilter/userinfo,_none' -benchmem -count 10 ./plugins/userinfo/
func BenchmarkTracing(b *testing.B) {
	is := tokentest.NewIssuer(b)
	ui := map[string]any{"sub": "u-alice", "email": "alice@example.org", "name": "Alice", "preferred_username": "alice"}
	claims := is.Claims("u-alice")
	for k, v := range ui {
		claims[k] = v
	}
	base := map[string]string{"x-userinfo": userinfoHeader(ui), "x-access-token": is.Sign(claims),
		"accept": "text/html", "user-agent": "Mozilla/5.0"}
	with := func(tp string) map[string]string {
		h := map[string]string{"traceparent": tp}
		for k, v := range base {
			h[k] = v
		}
		return h
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
	// No processor: sampled spans are recorded and ended, then dropped (no memory grows over b.N).
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	conf := []byte(`{"issuer":"` + is.URL + `","audience":"apisix","assertion":{"audience":"mitxonline"}}`)
	for _, c := range []struct {
		name    string
		deps    Deps
		headers map[string]string
	}{
		// APISIX's opentelemetry plugin on, the runner's tracing off: the header is there, unread.
		{"off", Deps{Emitter: emit.New(emit.Options{Keys: testKeys})}, with(parent + "01")},
		{"on, not sampled", Deps{Emitter: emit.New(emit.Options{Keys: testKeys}), Tracer: tp.Tracer("bench")}, with(parent + "00")},
		{"on, sampled", Deps{Emitter: emit.New(emit.Options{Keys: testKeys}), Tracer: tp.Tracer("bench")}, with(parent + "01")},
	} {
		p := New(c.deps)
		v, _ := p.ParseConf(conf)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				r := runnertest.NewRequest(uint32(i), 7, c.headers)
				w := httptest.NewRecorder()
				p.RequestFilter(v, w, r)
				if w.Code != 200 {
					b.Fatal(w.Body.String())
				}
			}
		})
	}
}
