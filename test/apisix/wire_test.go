package apisix

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	A6 "github.com/api7/ext-plugin-proto/go/A6"
	A6Err "github.com/api7/ext-plugin-proto/go/A6/Err"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
)

// Wire tests: the Gateway against a hand-made peer, checking the bytes
// init.lua sends and how it reads each answer.

func passAll(c net.Conn, call gotCall) bool {
	return WriteFrame(c, TypeHTTPReqCall, passFrame(call.ID)) == nil
}

func do(t *testing.T, g *Gateway, route *Route, req *Request) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := g.Do(ctx, route, req)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	return res
}

func entryMap(es []textEntry) map[string][]string {
	m := map[string][]string{}
	for _, e := range es {
		v := "<nil>"
		if e.Value != nil {
			v = *e.Value
		}
		m[e.Name] = append(m[e.Name], v)
	}
	return m
}

func TestWirePrepareConf(t *testing.T) {
	f := newFakeRunner(t, passAll)
	g := NewGateway(f.socket)
	defer g.Close()

	conf := []PluginConf{{Name: "userinfo", Value: `{"a":1}`}, {Name: "orgsync", Value: `{}`}}
	route := &Route{ID: "r1", Conf: conf}
	for i := 0; i < 3; i++ {
		do(t, g, route, &Request{})
	}
	ps := f.Prepares()
	if len(ps) != 1 {
		t.Fatalf("%d PrepareConf for 3 requests on one route, want 1 (token cached)", len(ps))
	}
	if !strings.HasPrefix(ps[0].Key, "route#r1#ext-plugin-post-req#") {
		t.Errorf("key = %q, want route#r1#ext-plugin-post-req#<version>", ps[0].Key)
	}
	if !reflect.DeepEqual(ps[0].Conf, conf) {
		t.Errorf("conf = %+v, want %+v (order kept)", ps[0].Conf, conf)
	}
	for _, c := range f.Calls() {
		if c.ConfToken != 1 {
			t.Errorf("call %d carries token %d, want 1", c.ID, c.ConfToken)
		}
	}

	t.Run("changed conf gets a new key", func(t *testing.T) {
		do(t, g, &Route{ID: "r1", Conf: []PluginConf{{Name: "userinfo", Value: `{"a":2}`}}}, &Request{})
		ps := f.Prepares()
		if len(ps) != 2 || ps[1].Key == ps[0].Key {
			t.Fatalf("prepares = %+v, want a second one with another key", ps)
		}
	})
	t.Run("pre-req plugin", func(t *testing.T) {
		do(t, g, &Route{ID: "r2", Plugin: "ext-plugin-pre-req", Conf: conf}, &Request{})
		ps := f.Prepares()
		if k := ps[len(ps)-1].Key; !strings.HasPrefix(k, "route#r2#ext-plugin-pre-req#") {
			t.Fatalf("key = %q", k)
		}
	})
	t.Run("no conf list", func(t *testing.T) {
		do(t, g, &Route{ID: "r3"}, &Request{})
		ps := f.Prepares()
		if p := ps[len(ps)-1]; p.HasConf {
			t.Fatalf("conf vector sent for a plugin conf without list: %+v", p)
		}
	})
}

func TestWireHTTPReqCall(t *testing.T) {
	f := newFakeRunner(t, passAll)
	g := NewGateway(f.socket)
	defer g.Close()

	req := &Request{
		Method: "POST",
		Path:   "/api/v1/items",
		Args:   url.Values{"b": {"2"}, "a": {"1", "x y"}},
		Header: http.Header{
			"X-Userinfo":   {"eyJ"},
			"X_userinfo":   {"smuggled"},
			"Accept":       {"text/html", "application/json"},
			"Host":         {"example.org:8080"},
			"Content-Type": {"application/json"},
		},
		SrcIP: "10.1.2.3",
		Vars:  map[string]string{"upstream_host": "backend.internal"},
	}
	do(t, g, &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}, req)
	c := f.Calls()[0]

	if c.Method != A6.MethodPOST {
		t.Errorf("method = %v, want POST (%d)", c.Method, A6.MethodPOST)
	}
	if c.Path != "/api/v1/items" {
		t.Errorf("path = %q", c.Path)
	}
	if !bytes.Equal(c.SrcIP, []byte{10, 1, 2, 3}) {
		t.Errorf("src_ip = %v, want the 4 bytes of $binary_remote_addr", c.SrcIP)
	}
	wantArgs := map[string][]string{"a": {"1", "x y"}, "b": {"2"}}
	if got := entryMap(c.Args); !reflect.DeepEqual(got, wantArgs) {
		t.Errorf("args = %v, want %v", got, wantArgs)
	}
	wantHdr := map[string][]string{
		"x-userinfo":   {"eyJ"},
		"x_userinfo":   {"smuggled"},
		"accept":       {"text/html", "application/json"},
		"host":         {"backend.internal"}, // $upstream_host, not the client's Host
		"content-type": {"application/json"},
	}
	if got := entryMap(c.Headers); !reflect.DeepEqual(got, wantHdr) {
		t.Errorf("headers = %v, want %v", got, wantHdr)
	}

	t.Run("ipv6 src_ip is 16 bytes", func(t *testing.T) {
		do(t, g, &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}, &Request{SrcIP: "2001:db8::1"})
		cs := f.Calls()
		if ip := cs[len(cs)-1].SrcIP; len(ip) != 16 || ip[0] != 0x20 {
			t.Fatalf("src_ip = %v", ip)
		}
	})
	t.Run("ids count up", func(t *testing.T) {
		cs := f.Calls()
		for i := 1; i < len(cs); i++ {
			if cs[i].ID != cs[i-1].ID+1 {
				t.Fatalf("ids %d then %d", cs[i-1].ID, cs[i].ID)
			}
		}
	})
	t.Run("defaults", func(t *testing.T) {
		do(t, g, &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}, &Request{})
		cs := f.Calls()
		c := cs[len(cs)-1]
		if c.Method != A6.MethodGET || c.Path != "/" || !bytes.Equal(c.SrcIP, []byte{127, 0, 0, 1}) {
			t.Fatalf("defaults: %+v", c)
		}
	})
}

func TestWireHeaderCap(t *testing.T) {
	f := newFakeRunner(t, passAll)
	g := NewGateway(f.socket)
	defer g.Close()
	h := http.Header{}
	args := url.Values{}
	for i := 0; i < 150; i++ {
		h.Set(fmt.Sprintf("X-H%03d", i), "v")
		args.Set(fmt.Sprintf("a%03d", i), "v")
	}
	res := do(t, g, &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}, &Request{Header: h, Args: args})
	c := f.Calls()[0]
	// ngx.req.get_headers() stops at 100; get_uri_args(0) has no limit.
	if len(c.Headers) != 100 || len(c.Args) != 150 {
		t.Fatalf("runner got %d headers, %d args; want 100 and 150", len(c.Headers), len(c.Args))
	}
	if len(res.UpstreamHeader) != 150 || len(res.UpstreamArgs) != 150 {
		t.Fatalf("upstream got %d headers, %d args, want all 150", len(res.UpstreamHeader), len(res.UpstreamArgs))
	}
}

func TestWireStop(t *testing.T) {
	var status uint16
	f := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
		hdrs := []textEntry{
			{Name: "X-Reason", Value: strp("a")},
			{Name: "x-reason", Value: strp("b")},
			{Name: "WWW-Authenticate", Value: strp("Bearer")},
		}
		return WriteFrame(c, TypeHTTPReqCall, stopFrame(call.ID, status, hdrs, []byte("denied"))) == nil
	})
	g := NewGateway(f.socket)
	defer g.Close()
	route := &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}

	for _, tc := range []struct {
		status uint16
		want   int
	}{{0, 200}, {403, 403}, {302, 302}} {
		status = tc.status
		res := do(t, g, route, &Request{})
		if res.Status != tc.want || res.Upstream {
			t.Errorf("stop status %d: client got %d (upstream %v), want %d", tc.status, res.Status, res.Upstream, tc.want)
		}
		if got := res.ResponseHeader.Values("X-Reason"); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("X-Reason = %v, want [a b] (set, then add)", got)
		}
		if res.ResponseHeader.Get("Www-Authenticate") != "Bearer" {
			t.Errorf("stop headers are not filtered: %v", res.ResponseHeader)
		}
		if string(res.Body) != "denied" {
			t.Errorf("body = %q", res.Body)
		}
	}
}

func TestWireRewrite(t *testing.T) {
	f := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
		hdrs := []textEntry{
			{Name: "X-Userinfo"},                      // no value: delete
			{Name: "x_userinfo", Value: strp("")},     // empty value: delete too
			{Name: "X-Trusted", Value: strp("yes")},   // set
			{Name: "accept", Value: strp("text/csv")}, // replaces both values
			{Name: "Host", Value: strp("other.internal")},
		}
		args := []textEntry{
			{Name: "drop"},
			{Name: "multi", Value: strp("1")},
			{Name: "multi", Value: strp("2")},
			{Name: "keep2", Value: strp("new")},
		}
		resp := []textEntry{
			{Name: "X-Resp", Value: strp("1")},
			{Name: "x-resp", Value: strp("2")},
			{Name: "Content-Type", Value: strp("text/plain")},
			{Name: "Location", Value: strp("https://evil.example.com/")},
			{Name: "Set-Cookie", Value: strp("a=b")},
		}
		return WriteFrame(c, TypeHTTPReqCall, rewriteFrame(call.ID, strp("/new path/ü"), hdrs, args, resp)) == nil
	})
	g := NewGateway(f.socket)
	defer g.Close()
	req := &Request{
		Path: "/old",
		Args: url.Values{"drop": {"x"}, "multi": {"0"}, "keep": {"k"}, "keep2": {"old"}},
		Header: http.Header{
			"X-Userinfo": {"forged"}, "X_userinfo": {"forged"}, "Accept": {"a", "b"},
			"Host": {"example.org"}, "Cookie": {"c=1"},
		},
	}
	res := do(t, g, &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}, req)

	if !res.Upstream || res.Status != 200 {
		t.Fatalf("rewrite must go upstream: %+v", res)
	}
	if res.UpstreamPath != "/new%20path/%C3%BC" {
		t.Errorf("path = %q, want the nginx-escaped rewrite path", res.UpstreamPath)
	}
	wantHdr := http.Header{
		"X-Trusted": {"yes"}, "Accept": {"text/csv"}, "Host": {"other.internal"}, "Cookie": {"c=1"},
	}
	if !reflect.DeepEqual(res.UpstreamHeader, wantHdr) {
		t.Errorf("upstream header = %v, want %v", res.UpstreamHeader, wantHdr)
	}
	if res.UpstreamHost != "other.internal" {
		t.Errorf("upstream host = %q, want the rewritten host", res.UpstreamHost)
	}
	wantArgs := url.Values{"multi": {"1", "2"}, "keep": {"k"}, "keep2": {"new"}}
	if !reflect.DeepEqual(res.UpstreamArgs, wantArgs) {
		t.Errorf("upstream args = %v, want %v", res.UpstreamArgs, wantArgs)
	}
	wantResp := http.Header{"X-Resp": {"1", "2"}, "Set-Cookie": {"a=b"}}
	if !reflect.DeepEqual(res.ResponseHeader, wantResp) {
		t.Errorf("response header = %v, want %v (content-type and location excluded)", res.ResponseHeader, wantResp)
	}
}

func TestWireRewriteWithoutPathKeepsPath(t *testing.T) {
	f := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
		return WriteFrame(c, TypeHTTPReqCall, rewriteFrame(call.ID, nil, nil, nil, nil)) == nil
	})
	g := NewGateway(f.socket)
	defer g.Close()
	res := do(t, g, &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}},
		&Request{Path: "/a b", Args: url.Values{"q": {"1"}}})
	if res.UpstreamPath != "/a b" || res.UpstreamArgs.Get("q") != "1" {
		t.Fatalf("got path %q args %v", res.UpstreamPath, res.UpstreamArgs)
	}
}

func TestWireExtraInfo(t *testing.T) {
	type answer struct {
		val []byte
		err error
	}
	var mu sync.Mutex
	var got []answer
	f := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
		for _, q := range []struct {
			info ei.Info
			name string
		}{
			{ei.InfoVar, "remote_addr"},
			{ei.InfoVar, "no_such_var"},
			{ei.InfoVar, "custom"},
			{ei.InfoVar, "http_x_userinfo"},
			{ei.InfoVar, "arg_a"},
			{ei.InfoVar, "route_id"},
			{ei.InfoReqBody, ""},
			{ei.InfoRespBody, ""},
		} {
			v, err := askExtra(c, q.info, q.name)
			mu.Lock()
			got = append(got, answer{v, err})
			mu.Unlock()
		}
		return WriteFrame(c, TypeHTTPReqCall, passFrame(call.ID)) == nil
	})
	g := NewGateway(f.socket)
	defer g.Close()
	route := &Route{ID: "r9", Conf: []PluginConf{{Name: "x", Value: "{}"}}}
	res := do(t, g, route, &Request{
		SrcIP:  "192.0.2.7",
		Args:   url.Values{"a": {"1", "2"}},
		Header: http.Header{"X-Userinfo": {"one"}, "X_userinfo": {"two"}},
		Vars:   map[string]string{"custom": "c"},
		Body:   []byte(`{"k":1}`),
	})
	if res.ExtraInfoCalls != 8 || !res.Upstream {
		t.Fatalf("ExtraInfoCalls = %d, upstream %v; want 8, true", res.ExtraInfoCalls, res.Upstream)
	}
	want := []string{"192.0.2.7", "<nil>", "c", "one, two", "1", "r9", `{"k":1}`, "<nil>"}
	for i, a := range got {
		s := "<nil>"
		if a.val != nil {
			s = string(a.val)
		}
		if a.err != nil {
			t.Fatalf("question %d: %v", i, a.err)
		}
		if i == 3 && s == "two, one" { // map order of the two header spellings
			s = "one, two"
		}
		if s != want[i] {
			t.Errorf("answer %d = %q, want %q", i, s, want[i])
		}
	}

	t.Run("empty body has no result", func(t *testing.T) {
		f2 := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
			v, err := askExtra(c, ei.InfoReqBody, "")
			if err != nil || v != nil {
				return false
			}
			return WriteFrame(c, TypeHTTPReqCall, passFrame(call.ID)) == nil
		})
		g2 := NewGateway(f2.socket)
		defer g2.Close()
		if res := do(t, g2, route, &Request{}); res.Status != 200 {
			t.Fatalf("status %d: %v", res.Status, res.Err)
		}
	})
	t.Run("unsupported info type gives 503", func(t *testing.T) {
		f2 := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
			_, _ = askExtra(c, ei.Info(9), "")
			return false
		})
		g2 := NewGateway(f2.socket)
		defer g2.Close()
		res := do(t, g2, route, &Request{})
		if res.Status != 503 || res.Err == nil || !strings.Contains(res.Err.Error(), "unsupported info type") {
			t.Fatalf("got %d, %v", res.Status, res.Err)
		}
	})
}

func TestWireConfTokenNotFound(t *testing.T) {
	route := &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}
	t.Run("re-prepares and succeeds", func(t *testing.T) {
		first := true
		f := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
			if first {
				first = false
				return WriteFrame(c, TypeError, errFrame(A6Err.CodeCONF_TOKEN_NOT_FOUND)) == nil
			}
			return WriteFrame(c, TypeHTTPReqCall, passFrame(call.ID)) == nil
		})
		g := NewGateway(f.socket)
		defer g.Close()
		res := do(t, g, route, &Request{})
		if res.Status != 200 || res.PrepareConfCalls != 2 || len(f.Prepares()) != 2 {
			t.Fatalf("status %d, %d prepares (runner saw %d); want 200 after 2", res.Status, res.PrepareConfCalls, len(f.Prepares()))
		}
	})
	t.Run("gives up after 3 tries", func(t *testing.T) {
		f := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
			return WriteFrame(c, TypeError, errFrame(A6Err.CodeCONF_TOKEN_NOT_FOUND)) == nil
		})
		g := NewGateway(f.socket)
		defer g.Close()
		res := do(t, g, route, &Request{})
		if res.Status != 503 || len(f.Calls()) != 3 || len(f.Prepares()) != 3 {
			t.Fatalf("status %d after %d calls, %d prepares; want 503 after 3", res.Status, len(f.Calls()), len(f.Prepares()))
		}
		if !strings.Contains(res.Err.Error(), "conf token not found") {
			t.Fatalf("err = %v", res.Err)
		}
	})
}

func TestWireFailuresGive503(t *testing.T) {
	route := &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}
	for _, tc := range []struct {
		name    string
		answer  func(c net.Conn, call gotCall) bool
		wantErr string
	}{
		{"service unavailable", func(c net.Conn, _ gotCall) bool {
			return WriteFrame(c, TypeError, errFrame(A6Err.CodeSERVICE_UNAVAILABLE)) == nil
		}, "service unavailable"},
		{"unknown error code", func(c net.Conn, _ gotCall) bool {
			return WriteFrame(c, TypeError, errFrame(A6Err.Code(7))) == nil
		}, "unknown err 7"},
		{"connection closed", func(net.Conn, gotCall) bool { return false }, "failed to receive RPC_HTTP_REQ_CALL"},
		{"unexpected type", func(c net.Conn, call gotCall) bool {
			return WriteFrame(c, TypePrepareConf, passFrame(call.ID)) == nil
		}, "unexpected type 1"},
		{"garbage payload", func(c net.Conn, _ gotCall) bool {
			return WriteFrame(c, TypeHTTPReqCall, []byte{0xff, 0xff, 0xff, 0x7f, 1}) == nil
		}, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeRunner(t, tc.answer)
			g := NewGateway(f.socket)
			defer g.Close()
			res := do(t, g, route, &Request{})
			if res.Status != 503 || res.Upstream {
				t.Fatalf("status %d upstream %v, want 503", res.Status, res.Upstream)
			}
			if res.Err == nil || !strings.Contains(res.Err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", res.Err, tc.wantErr)
			}
			if len(f.Calls()) != 1 {
				t.Fatalf("%d calls; only CONF_TOKEN_NOT_FOUND is retried", len(f.Calls()))
			}
		})
	}
	t.Run("no runner", func(t *testing.T) {
		g := NewGateway("/nonexistent/runner.sock")
		res := do(t, g, route, &Request{})
		if res.Status != 503 || !strings.Contains(res.Err.Error(), "failed to connect") {
			t.Fatalf("got %d %v", res.Status, res.Err)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		f := newFakeRunner(t, func(c net.Conn, _ gotCall) bool {
			time.Sleep(2 * time.Second)
			return false
		})
		g := NewGateway(f.socket)
		defer g.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		res, err := g.Do(ctx, route, &Request{})
		if err != nil || res.Status != 503 || time.Since(start) > time.Second {
			t.Fatalf("got %v, %v after %s", res, err, time.Since(start))
		}
	})
}

func TestWireConnectionPool(t *testing.T) {
	route := &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}
	t.Run("sequential requests reuse connections", func(t *testing.T) {
		f := newFakeRunner(t, passAll)
		g := NewGateway(f.socket)
		defer g.Close()
		for i := 0; i < 50; i++ {
			do(t, g, route, &Request{})
		}
		// The first request holds its call connection while PrepareConf
		// runs on a second one, as init.lua nests rpc_call.
		if n := f.accept.Load(); n != 2 || g.Dials() != 2 {
			t.Fatalf("%d connections (%d dials) for 50 requests, want 2", n, g.Dials())
		}
	})
	t.Run("failed call closes its connection", func(t *testing.T) {
		fail := true
		f := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
			if fail {
				fail = false
				return WriteFrame(c, TypeError, errFrame(A6Err.CodeSERVICE_UNAVAILABLE)) == nil
			}
			return passAll(c, call)
		})
		g := NewGateway(f.socket)
		defer g.Close()
		if res := do(t, g, route, &Request{}); res.Status != 503 {
			t.Fatal(res.Status)
		}
		g.mu.Lock()
		idle := len(g.idle)
		g.mu.Unlock()
		if idle != 1 {
			t.Fatalf("%d idle connections, want 1: the PrepareConf one, not the failed call's", idle)
		}
		if res := do(t, g, route, &Request{}); res.Status != 200 {
			t.Fatal(res.Status, res.Err)
		}
	})
	t.Run("idle connection closed by the runner is not reused", func(t *testing.T) {
		f := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
			passAll(c, call)
			return false // close after each answer
		})
		g := NewGateway(f.socket)
		defer g.Close()
		for i := 0; i < 3; i++ {
			if res := do(t, g, route, &Request{}); res.Status != 200 {
				t.Fatalf("request %d: %d %v", i, res.Status, res.Err)
			}
			time.Sleep(20 * time.Millisecond) // closed while idle in the pool
		}
	})
}

func TestWireConcurrent(t *testing.T) {
	release := make(chan struct{})
	var inflight sync.WaitGroup
	inflight.Add(40)
	f := newFakeRunner(t, func(c net.Conn, call gotCall) bool {
		inflight.Done()
		<-release
		return passAll(c, call)
	})
	g := NewGateway(f.socket)
	defer g.Close()
	route := &Route{ID: "1", Conf: []PluginConf{{Name: "x", Value: "{}"}}}

	var wg sync.WaitGroup
	results := make([]*Result, 40)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := g.Do(context.Background(), route, &Request{Path: fmt.Sprintf("/%d", i)})
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = res
		}()
	}
	inflight.Wait() // 40 calls in flight at once, each on its own connection
	close(release)
	wg.Wait()
	var paths []string
	for _, r := range results {
		if r == nil || r.Status != 200 {
			t.Fatalf("result %+v", r)
		}
		paths = append(paths, r.UpstreamPath)
	}
	sort.Strings(paths)
	if len(paths) != 40 {
		t.Fatal(len(paths))
	}
	g.mu.Lock()
	idle := len(g.idle)
	g.mu.Unlock()
	if idle != keepalivePoolSize {
		t.Fatalf("%d idle connections after 40 concurrent calls, want %d", idle, keepalivePoolSize)
	}
}

func TestDoMisuse(t *testing.T) {
	g := NewGateway("/nonexistent")
	for _, tc := range []struct {
		name  string
		route *Route
		req   *Request
	}{
		{"empty conf list", &Route{ID: "1", Conf: []PluginConf{}}, &Request{}},
		{"empty plugin name", &Route{ID: "1", Conf: []PluginConf{{Value: "{}"}}}, &Request{}},
		{"long plugin name", &Route{ID: "1", Conf: []PluginConf{{Name: strings.Repeat("n", 129)}}}, &Request{}},
		{"method without A6 value", &Route{ID: "1"}, &Request{Method: "CONNECT"}},
		{"bad src ip", &Route{ID: "1"}, &Request{SrcIP: "nope"}},
		{"nil request", &Route{ID: "1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := g.Do(context.Background(), tc.route, tc.req); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
