package keycloak

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func recorder(t *testing.T) (trace.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer("test"), rec
}

func byName(spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	out := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		out[s.Name()] = s
	}
	return out
}

func TestAdminCallsAreSpansOfTheRequest(t *testing.T) {
	tr, rec := recorder(t)
	s := newStandIn(t)
	c := s.client(t, Options{Tracer: tr})
	ctx, req := tr.Start(context.Background(), "orgsync")
	_, err := c.UserOrganizations(ctx, "u1")
	require.NoError(t, err)
	s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":"down"}`)
	})
	_, err = c.UserGroups(ctx, "u1")
	require.Error(t, err)
	req.End()

	spans := byName(rec.Ended())
	for _, name := range []string{"keycloak token", "keycloak user_organizations", "keycloak user_groups"} {
		require.Contains(t, spans, name)
		assert.Equal(t, req.SpanContext().SpanID(), spans[name].Parent().SpanID(), "%s nests under the request", name)
		assert.Equal(t, req.SpanContext().TraceID(), spans[name].SpanContext().TraceID())
		assert.Equal(t, trace.SpanKindClient, spans[name].SpanKind())
	}
	assert.Equal(t, "Unset", spans["keycloak user_organizations"].Status().Code.String())
	assert.Equal(t, "Error", spans["keycloak user_groups"].Status().Code.String())
	assert.Equal(t, "503", spans["keycloak user_groups"].Status().Description)
	for _, sp := range rec.Ended() {
		for _, a := range sp.Attributes() {
			assert.NotContains(t, a.Value.Emit(), "tok-", "no token in a span")
			assert.NotContains(t, a.Value.Emit(), "secret")
		}
	}
}

// The watcher's polls and the start-up checks have no request span: a
// runner with tracing on does not export a trace per poll.
func TestCallsOutsideARequestStartNoSpan(t *testing.T) {
	tr, rec := recorder(t)
	s := newStandIn(t)
	c := s.client(t, Options{Tracer: tr})
	_, err := c.UserOrganizations(context.Background(), "u1")
	require.NoError(t, err)
	assert.Empty(t, rec.Ended())
}

func TestKeySetFetchIsASpanOfTheRequest(t *testing.T) {
	tr, rec := recorder(t)
	jwk := publicJWK(t, "k1", "sig")
	srv := newJWKSServer(t, jwk)
	ks := NewKeySet(srv.url, &KeySetOptions{Tracer: tr})
	ctx, req := tr.Start(context.Background(), "userinfo")
	_, err := ks.Key(ctx, "k1")
	require.NoError(t, err)
	_, err = ks.Key(ctx, "k1") // held: no fetch, no span
	require.NoError(t, err)
	req.End()

	spans := rec.Ended()
	require.Len(t, spans, 2, "the request and one key set fetch")
	fetch := byName(spans)["keycloak jwks"]
	require.NotNil(t, fetch)
	assert.Equal(t, req.SpanContext().SpanID(), fetch.Parent().SpanID())
}
