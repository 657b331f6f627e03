package orgsync

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
)

// orgsync's span joins APISIX's trace, and the cache's miss and fill (with
// the Keycloak calls the loader makes: test/integration shows those on the
// real client) nest under it.
func TestRequestSpanParentsTheMiss(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := tp.Tracer("test")
	h := newHarness(t)
	store, err := cache.New(t.Context(), &cache.Options{Tracer: tr})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	h.plugin = New(Deps{Cache: store, Keycloak: h.dir, Tracer: tr, Emitter: h.emitter})
	h.dir.addUser("u-alice", true, acme)
	conf := h.route(`{"fresh_ttl":"1m","stale_ttl":"1m"}`)

	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	w, _ := h.do(conf, login("u-alice"), map[string]string{"traceparent": "00-" + traceID + "-" + parent + "-01"})
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
		assert.Equal(t, traceID, s.SpanContext().TraceID().String(), "%s carries the request's trace id", s.Name())
	}
	require.Contains(t, spans, Name)
	require.Contains(t, spans, "cache miss")
	require.Contains(t, spans, "cache fill")
	assert.Equal(t, parent, spans[Name].Parent().SpanID().String())
	assert.Equal(t, spans[Name].SpanContext().SpanID(), spans["cache miss"].Parent().SpanID())
	assert.Equal(t, spans["cache miss"].SpanContext().SpanID(), spans["cache fill"].Parent().SpanID())

	// A hit in process: the request's span alone.
	n := len(rec.Ended())
	w, _ = h.do(conf, login("u-alice"), map[string]string{"traceparent": "00-" + traceID + "-" + parent + "-01"})
	require.Equal(t, http.StatusOK, w.Code)
	assert.Len(t, rec.Ended(), n+1)
}
