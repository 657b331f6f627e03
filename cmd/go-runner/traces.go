package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tracing"
)

// traceVars are the OpenTelemetry variables the runner reads itself or
// documents; the SDK also reads the rest of the OTEL_EXPORTER_OTLP_* and
// OTEL_BSP_* family, which reach the runner only if nginx_config.envs lists
// them.
var traceVars = []string{
	"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_HEADERS",
	"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER",
	"OTEL_TRACES_SAMPLER_ARG",
}

// tracesEnabled decides from the standard variables whether the runner
// exports traces. The SDKs' own default is to export to localhost: the
// runner's is off, so that a runner nobody configured for traces does no
// tracing work at all. It is on when OTEL_TRACES_EXPORTER is "otlp", or
// unset and an OTLP endpoint is set; OTEL_SDK_DISABLED=true and
// OTEL_TRACES_EXPORTER=none turn it off. Anything the runner cannot honour
// (another exporter, the gRPC protocol, an unknown sampler) is an error at
// start rather than traces silently missing.
func tracesEnabled(getenv func(string) string) (bool, error) {
	switch v := strings.ToLower(strings.TrimSpace(getenv("OTEL_SDK_DISABLED"))); v {
	case "true":
		return false, nil
	case "", "false":
	default:
		return false, fmt.Errorf("OTEL_SDK_DISABLED %q: want true or false", v)
	}
	on := false
	switch v := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); v {
	case "none":
		return false, nil
	case "otlp":
		on = true
	case "":
		on = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER %q: the runner exports with otlp (or none)", v)
	}
	if !on {
		return false, nil
	}
	// The traces-specific variable wins over the general one.
	name := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	if getenv(name) == "" {
		name = "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	if v := getenv(name); v != "" && v != "http/protobuf" {
		return false, fmt.Errorf("%s %q: the runner speaks OTLP over HTTP only (http/protobuf), "+
			"as APISIX's opentelemetry plugin does", name, v)
	}
	if err := checkSampler(getenv("OTEL_TRACES_SAMPLER"), getenv("OTEL_TRACES_SAMPLER_ARG")); err != nil {
		return false, err
	}
	return true, nil
}

// checkSampler accepts the samplers the SDK builds from OTEL_TRACES_SAMPLER;
// the SDK would log a bad one and fall back to its default.
func checkSampler(name, arg string) error {
	switch name {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
		return nil
	case "traceidratio", "parentbased_traceidratio":
		if arg == "" {
			return nil
		}
		if r, err := strconv.ParseFloat(arg, 64); err != nil || r < 0 || r > 1 {
			return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q: want a ratio from 0 to 1", arg)
		}
		return nil
	}
	return fmt.Errorf("OTEL_TRACES_SAMPLER %q: want always_on, always_off, traceidratio, parentbased_always_on, "+
		"parentbased_always_off or parentbased_traceidratio", name)
}

// traceFlushTimeout bounds the last export at exit: APISIX kills the
// runner about a second after SIGTERM, and the drain comes first.
const traceFlushTimeout = 250 * time.Millisecond

// tracer is the runner's tracer and how to flush it at exit; a zero tracer
// (tracing off) has a nil trace.Tracer and a shutdown that does nothing.
type tracer struct {
	trace.Tracer
	provider *sdktrace.TracerProvider
}

// newTracer builds the tracer provider the OTEL_* variables describe: OTLP
// over HTTP, batched (a full queue drops spans, it never blocks a request),
// sampled by OTEL_TRACES_SAMPLER (default parentbased_always_on: the
// runner follows APISIX's decision in traceparent). The provider is not
// made otel's global one: the tracer is handed to what needs it.
func newTracer(ctx context.Context) (tracer, error) {
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return tracer{}, fmt.Errorf("OTEL_EXPORTER_OTLP_*: %w", err)
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over the defaults.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", "apisix-identity-runner"),
			attribute.String("service.version", version)),
		resource.WithFromEnv())
	if err != nil {
		return tracer{}, fmt.Errorf("OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	// Export failures reach otel's error handler, by default the standard
	// logger; the runner logs in JSON through slog, and at most once a minute
	// while a collector stays unreachable.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(throttledTraceError()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tracer{Tracer: tp.Tracer(tracing.Name, trace.WithInstrumentationVersion(version)), provider: tp}, nil
}

func throttledTraceError() func(error) {
	var last atomic.Int64
	return func(err error) {
		now := time.Now().UnixNano()
		if prev := last.Load(); now-prev < int64(time.Minute) || !last.CompareAndSwap(prev, now) {
			return
		}
		slog.Warn("traces: export failed (repeats are not logged for a minute)", "error", err)
	}
}

// shutdown exports what is still queued, for at most traceFlushTimeout.
func (t tracer) shutdown() {
	if t.provider == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
	defer cancel()
	if err := t.provider.Shutdown(ctx); err != nil {
		slog.Warn("traces: spans lost at exit", "error", err)
	}
}
