// Package tracing joins the trace APISIX's opentelemetry plugin starts with
// spans for what the runner waits on. A nil trace.Tracer is "tracing off":
// every function here then returns at once, without reading a header or
// allocating, so the request path pays one nil check.
//
// The tracer is handed down explicitly (plugin Deps, cache and keycloak
// options); nothing here reads otel's process-wide provider.
package tracing

import (
	"context"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Name is the instrumentation scope of the runner's spans.
const Name = "github.com/apisix-identity-runner/apisix-identity-runner"

// maxTraceparent bounds the header we parse. A version-00 traceparent is 55
// bytes; later versions may append fields, but nothing legitimate comes near
// this, and the header is client input whenever APISIX's opentelemetry
// plugin is not on the route to overwrite it.
const maxTraceparent = 256

// canonicalTraceparent is the header's key in the request's http.Header.
const canonicalTraceparent = "Traceparent"

// noSpan is what Start and Request return when they start nothing: ending
// it does nothing, and it is not the caller's parent, which must not be
// ended by a child's End.
var noSpan trace.Span = noop.Span{}

// propagator reads traceparent only: tracestate is vendor data for the
// participants that wrote it, and parsing it is one more client-controlled
// input for no gain in the runner's own spans.
var propagator = propagation.TraceContext{}

// Request starts the span of one plugin's work on a request (a server span,
// as the runner serves APISIX), the child of the span named by the request's
// traceparent header. A missing, repeated, oversized or malformed
// traceparent (all-zero ids, upper-case or non-hex digits, an unknown flag
// in version 00, version ff) is ignored: the span starts a new trace. The
// request never fails because of it. With t nil it returns ctx and a span
// whose End does nothing, having read nothing.
func Request(ctx context.Context, t trace.Tracer, name string, h pkgHTTP.Header) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noSpan
	}
	ctx = trace.ContextWithRemoteSpanContext(ctx, parent(h))
	return t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
}

// parent is the span context the request's traceparent names, or the
// invalid (empty) one.
func parent(h pkgHTTP.Header) trace.SpanContext {
	// W3C Trace Context: more than one traceparent is invalid. APISIX hands
	// the runner each value of a repeated header (ext-plugin/init.lua
	// build_headers), and Get would see only the first.
	values := h.View()[canonicalTraceparent]
	if len(values) != 1 || len(values[0]) > maxTraceparent {
		return trace.SpanContext{}
	}
	// ContextWithRemoteSpanContext with an invalid span context leaves the
	// new span without a parent: a new trace.
	return trace.SpanContextFromContext(propagator.Extract(context.Background(), oneHeader(values[0])))
}

// oneHeader is a TextMapCarrier holding only the traceparent value.
type oneHeader string

func (o oneHeader) Get(key string) string {
	if key == "traceparent" {
		return string(o)
	}
	return ""
}
func (oneHeader) Set(string, string) {}
func (oneHeader) Keys() []string     { return []string{"traceparent"} }

// Start starts a child span of the request's span in ctx: only when tracing
// is on (t not nil) and that span is recording, so that an unsampled request
// and the runner's own background work (the admin-event watcher's polls,
// the revocation store's loads) start nothing.
func Start(ctx context.Context, t trace.Tracer, name string) (context.Context, trace.Span) {
	if t == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noSpan
	}
	return t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
}

// End ends span, marking it failed when err is not nil. why is what the
// span says of the failure: a short reason, never a token or a secret
// (an error's text may carry either, so it is not used unless the caller
// passes it on purpose).
func End(span trace.Span, err error, why string) {
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, why)
	}
	span.End()
}
