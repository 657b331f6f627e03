package userinfo

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

const (
	apisixTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	apisixSpan  = "00f067aa0ba902b7"
)

func tracedPlugin(t *testing.T) (*Plugin, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := tp.Tracer("test")
	v := keycloak.NewVerifiers(0)
	v.Tracer = tr
	return New(Deps{Emitter: emit.New(emit.Options{Keys: testKeys}), Verifiers: v, Tracer: tr}), rec
}

// userinfo's span joins APISIX's trace (traceparent), and what a request
// that misses waits on nests under it: the token's verification, and under
// that the key set's fetch.
func TestRequestSpanJoinsTraceparent(t *testing.T) {
	p, rec := tracedPlugin(t)
	is := tokentest.NewIssuer(t)
	rt := newRouteOf(t, p, confFor(is, ""))
	h := loggedIn(is, "u-alice", map[string]any{"sub": "u-alice"})
	h["traceparent"] = "00-" + apisixTrace + "-" + apisixSpan + "-01"
	w, _ := rt.do(h)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
		assert.Equal(t, apisixTrace, s.SpanContext().TraceID().String(), "%s carries the request's trace id", s.Name())
	}
	require.Contains(t, spans, Name)
	require.Contains(t, spans, "userinfo verify token")
	require.Contains(t, spans, "keycloak jwks")
	assert.Equal(t, apisixSpan, spans[Name].Parent().SpanID().String())
	assert.Equal(t, spans[Name].SpanContext().SpanID(), spans["userinfo verify token"].Parent().SpanID())
	assert.Equal(t, spans["userinfo verify token"].SpanContext().SpanID(), spans["keycloak jwks"].Parent().SpanID())

	// The same login again: proven before, nothing waited on.
	n := len(rec.Ended())
	w, _ = rt.do(h)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Len(t, rec.Ended(), n+1, "a hit is the request's span alone")
}

// Whatever a client writes in traceparent, the identity outcome is the
// same as without it, and the span starts a trace of its own.
func TestForgedTraceparentNeverFailsARequest(t *testing.T) {
	p, rec := tracedPlugin(t)
	is := tokentest.NewIssuer(t)
	rt := newRouteOf(t, p, confFor(is, ""))
	for _, forged := range []string{
		"00-" + strings.ToUpper(apisixTrace) + "-" + apisixSpan + "-01",
		"00-00000000000000000000000000000000-" + apisixSpan + "-01",
		"00-" + apisixTrace + "-0000000000000000-01",
		"00-" + apisixTrace + "-" + apisixSpan + "-01-" + strings.Repeat("f", 1<<16),
		"zz-" + apisixTrace + "-" + apisixSpan + "-01",
		"\x00\x01\x02",
	} {
		h := loggedIn(is, "u-bob", map[string]any{"sub": "u-bob"})
		h["traceparent"] = forged
		w, _ := rt.do(h)
		assert.Equal(t, http.StatusOK, w.Code, "traceparent %.40q", forged)
		w, _ = rt.do(map[string]string{"traceparent": forged, "x-userinfo": "%%%"})
		assert.Equal(t, http.StatusUnauthorized, w.Code, "a bad identity is still refused")
	}
	for _, s := range rec.Ended() {
		assert.NotEqual(t, apisixTrace, s.SpanContext().TraceID().String())
	}
}
