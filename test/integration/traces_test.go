//go:build integration

package integration

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// otlpReceiver stands for an OpenTelemetry collector's OTLP/HTTP traces
// endpoint: it only collects what the runner exports.
type otlpReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rc := &otlpReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req collector.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
			http.Error(w, "not an OTLP/HTTP traces export", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					rc.services = append(rc.services, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				rc.spans = append(rc.spans, ss.GetSpans()...)
			}
		}
		rc.mu.Unlock()
		out, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// trace returns the spans received for traceID, by name.
func (rc *otlpReceiver) trace(traceID string) map[string]*tracepb.Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]*tracepb.Span{}
	for _, s := range rc.spans {
		if hex.EncodeToString(s.GetTraceId()) == traceID {
			out[s.GetName()] = s
		}
	}
	return out
}

func (rc *otlpReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.spans)
}

// A request APISIX's opentelemetry plugin traced (traceparent, sampled)
// that misses every cache produces the runner's spans in APISIX's trace:
// the plugins' request spans are children of APISIX's span, and what they
// waited on (the key set, Keycloak's admin API, Redis's fill lock and
// store) nests under them.
func TestTracesJoinAPISIXTraceOnAMiss(t *testing.T) {
	s := kctest.Env(t)
	rc := newOTLPReceiver(t)
	e := baseEnv(t, s.URL)
	e["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = rc.URL + "/v1/traces"
	e["OTEL_SERVICE_NAME"] = "it-runner"
	e["OTEL_BSP_SCHEDULE_DELAY"] = "100" // ms: the test need not wait 5 s per batch
	r := startRunner(t, e)

	user := kctest.CreateUser(t, "traced")
	kctest.AddMember(t, "acme", user.ID)
	sess := kctest.Login(t, user.Username, user.Password)
	route := newRoute(userinfoConf(t, ""), orgsyncConf(`{"fresh_ttl":"5m","stale_ttl":"10m","claims":["organization","groups"]}`))

	const traceID, apisixSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	h := headersOf(sess)
	h["traceparent"] = "00-" + traceID + "-" + apisixSpan + "-01"
	res := r.do(t, route, h)
	require.Equal(t, 200, res.Status, "body %s", res.Body)

	var spans map[string]*tracepb.Span
	eventually(t, 5*time.Second, "the miss's spans exported", func() bool {
		spans = rc.trace(traceID)
		return spans["userinfo"] != nil && spans["orgsync"] != nil && spans["cache fill"] != nil &&
			spans["keycloak user_organizations"] != nil
	})
	names := make([]string, 0, len(spans))
	for n := range spans {
		names = append(names, n)
	}
	t.Logf("spans of trace %s: %s", traceID, strings.Join(names, ", "))

	id := func(name string) string {
		require.Contains(t, spans, name, "spans: %v", names)
		return hex.EncodeToString(spans[name].GetSpanId())
	}
	parent := func(name string) string {
		require.Contains(t, spans, name, "spans: %v", names)
		return hex.EncodeToString(spans[name].GetParentSpanId())
	}
	assert.Equal(t, apisixSpan, parent("userinfo"), "userinfo's span is a child of APISIX's")
	assert.Equal(t, apisixSpan, parent("orgsync"), "orgsync's too")
	assert.Equal(t, tracepb.Span_SPAN_KIND_SERVER, spans["orgsync"].GetKind())
	assert.Equal(t, id("userinfo"), parent("userinfo verify token"), "token verification on a miss")
	assert.Equal(t, id("userinfo verify token"), parent("keycloak jwks"), "the first token fetches the key set")
	assert.Equal(t, id("orgsync"), parent("redis get"), "the Redis read of the miss")
	assert.Equal(t, id("orgsync"), parent("cache miss"))
	assert.Equal(t, id("cache miss"), parent("cache fill"))
	assert.Equal(t, id("cache fill"), parent("redis fill lock"))
	assert.Equal(t, id("cache fill"), parent("redis set"))
	for _, kc := range []string{"keycloak user", "keycloak user_organizations", "keycloak user_groups"} {
		assert.Equal(t, id("cache fill"), parent(kc), "%s is what the fill waited on", kc)
	}
	rc.mu.Lock()
	assert.Contains(t, rc.services, "it-runner", "OTEL_SERVICE_NAME names the service")
	rc.mu.Unlock()

	// A hit: only the two request spans, nothing waited on.
	const hitTrace = "1af7651916cd43dd8448eb211c80319c"
	h["traceparent"] = "00-" + hitTrace + "-" + apisixSpan + "-01"
	require.Equal(t, 200, r.do(t, route, h).Status)
	eventually(t, 5*time.Second, "the hit's spans exported", func() bool { return len(rc.trace(hitTrace)) >= 2 })
	time.Sleep(300 * time.Millisecond)
	hit := rc.trace(hitTrace)
	assert.Len(t, hit, 2, "a hit waits on nothing: %v", hit)

	// APISIX sampled it out (flags 00): the runner exports nothing for it.
	const unsampled = "2af7651916cd43dd8448eb211c80319c"
	h["traceparent"] = "00-" + unsampled + "-" + apisixSpan + "-00"
	require.Equal(t, 200, r.do(t, route, h).Status)

	// Forged headers never fail the request; they start traces of their own.
	before := rc.count()
	for _, forged := range []string{
		"00-" + strings.ToUpper(traceID) + "-" + apisixSpan + "-01",
		"00-00000000000000000000000000000000-" + apisixSpan + "-01",
		"00-" + traceID + "-0000000000000000-01",
		"ff-" + traceID + "-" + apisixSpan + "-01",
		"00-" + traceID + "-" + apisixSpan + "-01-" + strings.Repeat("x", 8000),
		"garbage",
	} {
		h["traceparent"] = forged
		res := r.do(t, route, h)
		assert.Equal(t, 200, res.Status, "traceparent %.60q: body %s", forged, res.Body)
	}
	eventually(t, 5*time.Second, "the forged requests' spans exported", func() bool { return rc.count() >= before+12 })
	assert.Empty(t, rc.trace(strings.ToLower(unsampled)), "an unsampled request is not exported")
	assert.Len(t, rc.trace(traceID), len(spans), "no forged header joined the first trace")
}
