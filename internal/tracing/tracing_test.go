package tracing

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
)

const (
	traceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentID   = "00f067aa0ba902b7"
	sampledTP  = "00-" + traceID + "-" + parentID + "-01"
	unsampleTP = "00-" + traceID + "-" + parentID + "-00"
)

// newTracer is the runner's provider (default sampler: parent-based, always
// on) with an in-process recorder instead of the OTLP exporter.
func newTracer(t *testing.T) (trace.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer(Name), rec
}

func request(values ...string) *runnertest.Request {
	r := runnertest.NewRequest(1, 1, nil)
	for _, v := range values {
		r.Header().View().Add("traceparent", v)
	}
	return r
}

func TestRequestJoinsAPISIXTrace(t *testing.T) {
	tr, rec := newTracer(t)
	ctx, span := Request(context.Background(), tr, "userinfo", request(sampledTP).Header())
	_, child := Start(ctx, tr, "keycloak users")
	child.End()
	span.End()

	spans := rec.Ended()
	require.Len(t, spans, 2)
	req, kc := spans[1], spans[0]
	assert.Equal(t, traceID, req.SpanContext().TraceID().String(), "the request's span is in APISIX's trace")
	assert.Equal(t, parentID, req.Parent().SpanID().String(), "and APISIX's span is its parent")
	assert.True(t, req.Parent().IsRemote())
	assert.Equal(t, trace.SpanKindServer, req.SpanKind())
	assert.Equal(t, req.SpanContext().SpanID(), kc.Parent().SpanID(), "what the request waits on nests under it")
	assert.Equal(t, traceID, kc.SpanContext().TraceID().String())
}

// traceparent is client input whenever APISIX's opentelemetry plugin does
// not overwrite it: nothing a client writes there can fail a request, and
// what is not one valid header starts a trace of the runner's own.
func TestForgedTraceparentStartsANewTrace(t *testing.T) {
	for name, values := range map[string][]string{
		"upper-case hex":     {"00-" + strings.ToUpper(traceID) + "-" + parentID + "-01"},
		"upper-case span":    {"00-" + traceID + "-" + strings.ToUpper(parentID) + "-01"},
		"not hex":            {"00-" + strings.Repeat("g", 32) + "-" + parentID + "-01"},
		"all-zero trace id":  {"00-" + strings.Repeat("0", 32) + "-" + parentID + "-01"},
		"all-zero span id":   {"00-" + traceID + "-" + strings.Repeat("0", 16) + "-01"},
		"version ff":         {"ff-" + traceID + "-" + parentID + "-01"},
		"version 00, extra":  {sampledTP + "-00"},
		"short trace id":     {"00-" + traceID[:30] + "-" + parentID + "-01"},
		"no dashes":          {strings.ReplaceAll(sampledTP, "-", "")},
		"repeated":           {sampledTP, sampledTP},
		"repeated, differ":   {sampledTP, "00-" + strings.Repeat("1", 32) + "-" + parentID + "-01"},
		"huge":               {"01-" + traceID + "-" + parentID + "-01-" + strings.Repeat("a", 1<<20)},
		"just over the cap":  {"01-" + traceID + "-" + parentID + "-01-" + strings.Repeat("a", maxTraceparent)},
		"empty":              {""},
		"binary":             {"\x00\xff-" + traceID + "-" + parentID + "-01"},
		"spaces":             {" " + sampledTP + " "},
		"unicode in id":      {"00-" + traceID[:31] + "é-" + parentID + "-01"},
		"flags not hex":      {"00-" + traceID + "-" + parentID + "-zz"},
		"reserved flag, v00": {"00-" + traceID + "-" + parentID + "-09"},
	} {
		t.Run(name, func(t *testing.T) {
			tr, rec := newTracer(t)
			ctx, span := Request(context.Background(), tr, "orgsync", request(values...).Header())
			require.NotPanics(t, func() { _, c := Start(ctx, tr, "cache miss"); c.End() })
			span.End()
			spans := rec.Ended()
			require.Len(t, spans, 2, "a new trace, sampled by the root sampler")
			req := spans[1]
			assert.False(t, req.Parent().IsValid(), "no parent: the header was ignored")
			assert.NotEqual(t, traceID, req.SpanContext().TraceID().String())
			assert.True(t, req.SpanContext().IsValid())
		})
	}
}

// A later version may carry more fields; within the cap it still joins.
func TestFutureVersionJoins(t *testing.T) {
	tr, rec := newTracer(t)
	_, span := Request(context.Background(), tr, "userinfo", request("01-"+traceID+"-"+parentID+"-01-what-comes").Header())
	span.End()
	require.Len(t, rec.Ended(), 1)
	assert.Equal(t, traceID, rec.Ended()[0].SpanContext().TraceID().String())
}

// APISIX's sampler said no (its default sampler is always_off, and it still
// sends traceparent, flags 00): the runner follows and records nothing, so
// the children start nothing either.
func TestUnsampledParentRecordsNothing(t *testing.T) {
	tr, rec := newTracer(t)
	ctx, span := Request(context.Background(), tr, "userinfo", request(unsampleTP).Header())
	assert.False(t, span.IsRecording())
	_, child := Start(ctx, tr, "keycloak users")
	assert.Equal(t, noSpan, child, "no child span under an unsampled request")
	child.End()
	span.End()
	assert.Empty(t, rec.Ended())
}

// Background work (the watcher's polls) has no request span: it starts none.
func TestStartWithoutRequestSpanStartsNothing(t *testing.T) {
	tr, rec := newTracer(t)
	ctx := context.Background()
	got, span := Start(ctx, tr, "keycloak admin_events")
	assert.Equal(t, ctx, got)
	span.End()
	assert.Empty(t, rec.Ended())
}

// Tracing off: the header is not read and nothing is allocated.
func TestOffCostsNothing(t *testing.T) {
	r := request(sampledTP)
	ctx := context.Background()
	h := r.Header()
	allocs := testing.AllocsPerRun(100, func() {
		c, span := Request(ctx, nil, "userinfo", h)
		c, child := Start(c, nil, "keycloak users")
		End(child, nil, "")
		span.End()
		if c != ctx {
			panic("context changed")
		}
	})
	assert.Zero(t, allocs)
}

func TestEndMarksFailure(t *testing.T) {
	tr, rec := newTracer(t)
	ctx, span := Request(context.Background(), tr, "orgsync", request(sampledTP).Header())
	_, child := Start(ctx, tr, "keycloak users")
	End(child, assert.AnError, "503")
	span.End()
	got := rec.Ended()[0]
	assert.Equal(t, "Error", got.Status().Code.String())
	assert.Equal(t, "503", got.Status().Description, "the reason given, not the error's text")
}
