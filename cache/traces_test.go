package cache

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A miss of a traced request shows what it waited on, nested: the Redis
// read, then the wait, the fill under it with its lock and its store. A
// hit in process starts nothing.
func TestMissSpansNestUnderTheRequest(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := tp.Tracer("test")
	c := newTestCache(t, Options{RedisURL: needEnv(t, "REDIS_TEST_URL"), KeyPrefix: testPrefix(t), OpTimeout: time.Second,
		Tracer: tr})

	ctx, req := tr.Start(context.Background(), "orgsync")
	p := Policy{Fresh: time.Minute, Stale: time.Minute}
	var loadCtxSpan sdktrace.ReadOnlySpan
	res, err := c.Get(ctx, "k", p, func(ctx context.Context) ([]byte, error) {
		_, s := tr.Start(ctx, "keycloak user_organizations")
		loadCtxSpan = s.(sdktrace.ReadOnlySpan)
		s.End()
		return []byte("v"), nil
	})
	require.NoError(t, err)
	require.Equal(t, SourceLoader, res.Source)
	n := len(rec.Ended())
	_, err = c.Get(ctx, "k", p, nil) // in-process hit
	require.NoError(t, err)
	assert.Len(t, rec.Ended(), n, "a hit in process starts no span")
	req.End()

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	parentOf := func(child, parent string) {
		t.Helper()
		require.Contains(t, spans, child)
		require.Contains(t, spans, parent)
		assert.Equal(t, spans[parent].SpanContext().SpanID(), spans[child].Parent().SpanID(), "%s under %s", child, parent)
		assert.Equal(t, req.SpanContext().TraceID(), spans[child].SpanContext().TraceID())
	}
	parentOf("redis get", "orgsync")
	parentOf("cache miss", "orgsync")
	parentOf("cache fill", "cache miss")
	parentOf("redis fill lock", "cache fill")
	parentOf("redis set", "cache fill")
	assert.Equal(t, spans["cache fill"].SpanContext().SpanID(), loadCtxSpan.Parent().SpanID(), "the loader runs in the fill's span")
}
