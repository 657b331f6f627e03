package apisix

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// These drive testdata/protorunner, built on the patched runner library
// (third_party/apisix-go-plugin-runner), over its real unix socket.

func TestRunnerReadsBodiesOfAnySizeWhole(t *testing.T) {
	// v0.5.0 read the ExtraInfo answer with one Read: from about 219 KB on
	// the body came back cut and the rest was parsed as frames.
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	rt := route(PluginConf{"extra", `{"body":true}`})
	for _, size := range []int{0, 1 << 10, 64 << 10, 64<<10 + 1, 219 << 10, 220 << 10, 512 << 10, 1 << 20} {
		body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		res := do(t, g, rt, &Request{Method: "POST", Body: body})
		if res.Status != 200 || !res.Upstream {
			t.Fatalf("%d bytes: status %d, err %v", size, res.Status, res.Err)
		}
		if e := res.UpstreamHeader.Get("X-Err"); e != "" {
			t.Fatalf("%d bytes: the plugin's Body() failed: %s", size, e)
		}
		if got, want := res.UpstreamHeader.Get("X-Body"), fmt.Sprintf("%q", body); got != want {
			t.Fatalf("%d bytes: the plugin got %d bytes of quoted body, want %d", size, len(got), len(want))
		}
	}
	if g.Dials() != 2 {
		t.Errorf("%d dials, want 2 (call + nested PrepareConf): the runner dropped or desynchronised a connection", g.Dials())
	}
}

func TestRunnerNeverParsesABodyAsFrames(t *testing.T) {
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	rt := route(PluginConf{"extra", `{"body":true}`})
	body, err := InjectionBody(220 << 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		res := do(t, g, rt, &Request{Method: "POST", Body: body})
		if res.Status != 200 || res.UpstreamHeader.Get("X-Err") != "" ||
			res.UpstreamHeader.Get("X-Body") != fmt.Sprintf("%q", body) {
			t.Fatalf("try %d: status %d, err %v, X-Err %q", i, res.Status, res.Err, res.UpstreamHeader.Get("X-Err"))
		}
		// The next request on the same connection gets its own answer.
		res = do(t, g, rt, &Request{Method: "POST", Body: []byte("next")})
		if res.Status != 200 || res.UpstreamHeader.Get("X-Body") != `"next"` {
			t.Fatalf("try %d: request after the crafted body: status %d, err %v, X-Body %q",
				i, res.Status, res.Err, res.UpstreamHeader.Get("X-Body"))
		}
	}
	if g.Dials() != 2 {
		t.Errorf("%d dials, want 2: a connection carried stray frames or was closed", g.Dials())
	}
	if err := r.Stop(); err != nil { // drains the output pipe
		t.Fatal(err)
	}
	if strings.Contains(r.Output(), PlantedPlugin) {
		t.Errorf("the runner parsed the frame inside the body (it looked up %s)", PlantedPlugin)
	}
	if n := strings.Count(r.Output(), "receive rpc type: 1 "); n != 2 {
		t.Errorf("runner received %d PrepareConf frames, want 2 (readiness probe + the route)", n)
	}
}

func TestRunnerSetReplacesEveryValueOfARepeatedHeader(t *testing.T) {
	// v0.5.0's change set compared only first values: a header the client
	// sent twice, Set by the plugin to the client's first value, kept the
	// client's second value upstream.
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	rt := route(PluginConf{"rewrite", `{"set_header":{"X-User-Orgs":"acme"}}`})
	for name, h := range map[string]http.Header{
		"repeated":           {"X-User-Orgs": {"acme", "globex"}},
		"two letter cases":   {"x-user-orgs": {"acme"}, "X-USER-ORGS": {"globex"}},
		"first differs":      {"X-User-Orgs": {"globex", "acme"}},
		"three values":       {"X-User-Orgs": {"acme", "acme", "globex"}},
		"single, same value": {"X-User-Orgs": {"acme"}},
	} {
		// The Gateway merges letter cases in map order, so the client's
		// "acme" comes first in about half the tries: try enough times.
		for try := 0; try < 12; try++ {
			res := do(t, g, rt, &Request{Header: h})
			if res.Status != 200 || !res.Upstream {
				t.Fatalf("%s: status %d, err %v", name, res.Status, res.Err)
			}
			if got := res.UpstreamHeader.Values("X-User-Orgs"); len(got) != 1 || got[0] != "acme" {
				t.Fatalf("%s: upstream X-User-Orgs = %q, want exactly [acme]", name, got)
			}
		}
	}
}
