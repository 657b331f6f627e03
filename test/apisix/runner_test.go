package apisix

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests drive testdata/protorunner, a real apisix-go-plugin-runner
// v0.5.0 binary, through the Gateway.

var protorunner string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "a6bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	protorunner = filepath.Join(dir, "protorunner")
	if err := buildProtorunner(protorunner); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildProtorunner builds testdata/protorunner. When go.mod lacks the
// runner's own dependencies it retries on a scratch copy of go.mod, so the
// shared go.mod is never edited by a test run.
func buildProtorunner(out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := func(extra ...string) ([]byte, error) {
		args := append([]string{"build"}, extra...)
		args = append(args, "-o", out, "./testdata/protorunner")
		return exec.Command(goBin, args...).CombinedOutput()
	}
	first, err := build()
	if err == nil {
		return nil
	}
	gomod, gerr := exec.Command(goBin, "env", "GOMOD").Output()
	if gerr != nil {
		return fmt.Errorf("build protorunner: %v\n%s", err, first)
	}
	scratch, serr := os.MkdirTemp("", "a6mod-")
	if serr != nil {
		return serr
	}
	defer os.RemoveAll(scratch)
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	for _, f := range []string{"go.mod", "go.sum"} {
		b, rerr := os.ReadFile(filepath.Join(root, f))
		if rerr != nil && f == "go.mod" {
			return rerr
		}
		if werr := os.WriteFile(filepath.Join(scratch, f), b, 0o600); werr != nil {
			return werr
		}
	}
	second, err := build("-mod=mod", "-modfile="+filepath.Join(scratch, "go.mod"))
	if err != nil {
		return fmt.Errorf("build protorunner: %v\n%s\nretry on a scratch go.mod: %s", err, first, second)
	}
	return nil
}

func startRunner(t *testing.T, opts RunnerOptions) *Runner {
	t.Helper()
	opts.Binary = protorunner
	r, err := StartRunner(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("stop runner: %v", err)
		}
		if t.Failed() {
			t.Logf("runner output:\n%s", r.Output())
		}
	})
	return r
}

func newGateway(t *testing.T, r *Runner) *Gateway {
	g := NewGateway(r.Socket())
	t.Cleanup(g.Close)
	return g
}

// waitOutput waits up to 2 s for the runner to log s: its output reaches
// Output through a pipe, a little after the runner answered.
func waitOutput(r *Runner, s string) bool {
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(r.Output(), s) {
			return true
		}
	}
	return false
}

func route(conf ...PluginConf) *Route { return &Route{ID: "1", Conf: conf} }

func TestRunnerStop(t *testing.T) {
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	t.Run("no WriteHeader gives 200", func(t *testing.T) {
		res := do(t, g, route(PluginConf{"stop", `{"body":"hello"}`}), &Request{})
		if res.Status != 200 || res.Upstream || string(res.Body) != "hello" {
			t.Fatalf("got %d upstream=%v body=%q err=%v", res.Status, res.Upstream, res.Body, res.Err)
		}
	})
	t.Run("403 with headers and body", func(t *testing.T) {
		res := do(t, g, route(PluginConf{"stop", `{"status":403,"header":{"X-Reason":"forged identity"},"body":"no"}`}), &Request{})
		if res.Status != 403 || res.Upstream || string(res.Body) != "no" ||
			res.ResponseHeader.Get("X-Reason") != "forged identity" {
			t.Fatalf("got %+v", res)
		}
	})
	t.Run("empty Write stops with 200", func(t *testing.T) {
		// Any Write or WriteHeader stops the chain (ReqResponse.HasChange),
		// even with an empty body.
		res := do(t, g, route(PluginConf{"stop", `{"header":{"X-A":"1"}}`}), &Request{})
		if res.Status != 200 || res.Upstream || len(res.Body) != 0 || res.ResponseHeader.Get("X-A") != "1" {
			t.Fatalf("got %+v", res)
		}
	})
}

func TestRunnerRewrite(t *testing.T) {
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	conf := `{"del_header":["X-Userinfo","X_userinfo"],"set_header":{"X-Trusted":"yes"},
		"path":"/v2/items","del_arg":["debug"],"set_arg":{"page":"2"},"resp_header":{"X-Checked":"1"}}`
	res := do(t, g, route(PluginConf{"rewrite", conf}), &Request{
		Path: "/v1/items",
		Args: url.Values{"debug": {"1"}, "page": {"1"}, "q": {"x"}},
		Header: http.Header{
			"X-Userinfo": {"forged"},
			"X_userinfo": {"smuggled"},
			"Accept":     {"*/*"},
			"Host":       {"example.org"},
		},
	})
	if !res.Upstream || res.Status != 200 {
		t.Fatalf("got %d upstream=%v err=%v", res.Status, res.Upstream, res.Err)
	}
	want := http.Header{"X-Trusted": {"yes"}, "Accept": {"*/*"}, "Host": {"example.org"}}
	if fmt.Sprint(res.UpstreamHeader) != fmt.Sprint(want) {
		t.Errorf("upstream header = %v, want %v", res.UpstreamHeader, want)
	}
	if res.UpstreamPath != "/v2/items" {
		t.Errorf("path = %q", res.UpstreamPath)
	}
	if got := res.UpstreamArgs.Encode(); got != "page=2&q=x" {
		t.Errorf("args = %q, want page=2&q=x", got)
	}
	if res.ResponseHeader.Get("X-Checked") != "1" {
		t.Errorf("response header = %v", res.ResponseHeader)
	}
}

func TestRunnerExtraInfo(t *testing.T) {
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	conf := `{"vars":["remote_addr","request_method","no_such_var"],"body":true}`
	res := do(t, g, route(PluginConf{"extra", conf}), &Request{
		Method: "POST", SrcIP: "198.51.100.4", Body: []byte(`{"a":1}`),
	})
	if res.Status != 200 || !res.Upstream {
		t.Fatalf("got %d err=%v", res.Status, res.Err)
	}
	h := res.UpstreamHeader
	if h.Get("X-Err") != "" {
		t.Fatalf("runner error: %s", h.Get("X-Err"))
	}
	for name, want := range map[string]string{
		"X-Var-Remote_addr":    `"198.51.100.4"`,
		"X-Var-Request_method": `"POST"`,
		"X-Var-No_such_var":    `""`,
		"X-Body":               `"{\"a\":1}"`,
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if res.ExtraInfoCalls != 4 {
		t.Errorf("ExtraInfoCalls = %d, want 4 (3 vars + body)", res.ExtraInfoCalls)
	}
}

func TestRunnerPanicGives503(t *testing.T) {
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	res := do(t, g, route(PluginConf{"panic", ""}), &Request{})
	if res.Status != 503 || res.Upstream || res.Err == nil {
		t.Fatalf("got %+v", res)
	}
	// The runner closes the connection before it logs the panic.
	if !waitOutput(r, "panic recovered: protorunner: planned panic") {
		t.Errorf("runner did not log the panic")
	}
	// The runner lives on; only that connection died.
	if res := do(t, g, route(PluginConf{"stop", `{"body":"ok"}`}), &Request{}); res.Status != 200 {
		t.Fatalf("after the panic: %d %v", res.Status, res.Err)
	}
}

func TestRunnerConfExpireReprepares(t *testing.T) {
	r := startRunner(t, RunnerOptions{ConfExpire: time.Second})
	g := newGateway(t, r)
	rt := route(PluginConf{"stop", `{"body":"ok"}`})
	if res := do(t, g, rt, &Request{}); res.Status != 200 || res.PrepareConfCalls != 1 {
		t.Fatalf("first: %d, %d prepares", res.Status, res.PrepareConfCalls)
	}
	time.Sleep(1300 * time.Millisecond) // runner keeps confs 1.2 x 1 s, truncated to 1 s
	res := do(t, g, rt, &Request{})
	if res.Status != 200 || res.PrepareConfCalls != 1 {
		t.Fatalf("after expiry: %d, %d prepares, err %v; want 200 after one re-prepare",
			res.Status, res.PrepareConfCalls, res.Err)
	}
	if !waitOutput(r, "key not found") {
		t.Errorf("runner did not report the unknown token")
	}
}

func TestRunnerRestartReprepares(t *testing.T) {
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	rt := route(PluginConf{"stop", `{"body":"ok"}`})
	do(t, g, rt, &Request{})
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	res := do(t, g, rt, &Request{})
	if res.Status != 200 || res.PrepareConfCalls != 1 {
		t.Fatalf("after restart: %d, %d prepares, err %v", res.Status, res.PrepareConfCalls, res.Err)
	}
}

func TestRunnerSkipsUnknownAndBadPlugins(t *testing.T) {
	// Fail-open fact of v0.5.0: a misspelled name or a conf that does not
	// parse is skipped, and the rest of the chain runs.
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	res := do(t, g, route(
		PluginConf{"userinfo-typo", `{}`},
		PluginConf{"badconf", `{}`},
		PluginConf{"rewrite", `{"set_header":{"X-Ran":"1"}}`},
	), &Request{})
	if res.Status != 200 || !res.Upstream || res.UpstreamHeader.Get("X-Ran") != "1" {
		t.Fatalf("got %+v", res)
	}
	for _, want := range []string{"can't find plugin userinfo-typo, skip", "failed to parse configuration for plugin badconf"} {
		if !waitOutput(r, want) {
			t.Errorf("runner output lacks %q", want)
		}
	}
	t.Run("only skipped plugins: request passes untouched", func(t *testing.T) {
		res := do(t, g, &Route{ID: "2", Conf: []PluginConf{{"badconf", `{}`}}}, &Request{Header: http.Header{"X-Userinfo": {"forged"}}})
		if res.Status != 200 || !res.Upstream || res.UpstreamHeader.Get("X-Userinfo") != "forged" {
			t.Fatalf("got %+v", res)
		}
	})
	t.Run("no conf list runs nothing", func(t *testing.T) {
		res := do(t, g, &Route{ID: "3"}, &Request{})
		if res.Status != 200 || !res.Upstream {
			t.Fatalf("got %+v", res)
		}
	})
}

func TestRunnerConnectionReuse(t *testing.T) {
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	rt := route(PluginConf{"rewrite", `{"set_header":{"X-A":"1"}}`})
	for i := 0; i < 50; i++ {
		if res := do(t, g, rt, &Request{}); res.Status != 200 {
			t.Fatalf("request %d: %d %v", i, res.Status, res.Err)
		}
	}
	if g.Dials() != 2 {
		t.Errorf("%d dials for 50 requests, want 2 (call + nested PrepareConf)", g.Dials())
	}
	if err := r.Stop(); err != nil { // Stop drains the output pipe
		t.Fatal(err)
	}
	if n := strings.Count(r.Output(), "Client connected"); n != 3 {
		t.Errorf("runner saw %d connections, want 3 (readiness probe + 2)", n)
	}
}

func TestRunnerConcurrent(t *testing.T) {
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	rt := route(PluginConf{"echo", ""})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				path := fmt.Sprintf("/w%d/r%d", w, i)
				res, err := g.Do(context.Background(), rt, &Request{
					Method: "PUT", Path: path, SrcIP: "203.0.113.9",
					Args: url.Values{"i": {fmt.Sprint(i)}}, Header: http.Header{"X-Worker": {fmt.Sprint(w)}},
				})
				if err != nil || res.Status != 200 {
					t.Errorf("%s: %v %+v", path, err, res)
					return
				}
				var e struct {
					Method, Path string
					SrcIP        string              `json:"src_ip"`
					Args         map[string][]string `json:"args"`
					Header       map[string][]string `json:"header"`
				}
				if err := json.Unmarshal(res.Body, &e); err != nil {
					t.Errorf("%s: %v", path, err)
					return
				}
				if e.Path != path || e.Method != "PUT" || e.SrcIP != "203.0.113.9" ||
					e.Args["i"][0] != fmt.Sprint(i) || e.Header["X-Worker"][0] != fmt.Sprint(w) {
					t.Errorf("%s: runner saw %+v", path, e)
					return
				}
			}
		}()
	}
	wg.Wait()
	if g.Dials() > keepalivePoolSize+8 {
		t.Errorf("%d dials for 8 workers", g.Dials())
	}
}

func TestRunnerLifecycle(t *testing.T) {
	r, err := StartRunner(RunnerOptions{Binary: protorunner, Env: []string{"FOO=bar"}})
	if err != nil {
		t.Fatal(err)
	}
	sock := r.Socket()
	if err := r.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, r.Output())
	}
	out := r.Output()
	for _, want := range []string{"conf cache ttl is 1h12m0s", "listening to " + sock, "server receive terminated and exit"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Dir(sock)); !os.IsNotExist(err) {
		t.Errorf("socket dir left behind: %v", err)
	}

	t.Run("binary that exits", func(t *testing.T) {
		_, err := StartRunner(RunnerOptions{Binary: "/bin/false"})
		if err == nil || !strings.Contains(err.Error(), "exited before listening") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("conf expire under 1s", func(t *testing.T) {
		if _, err := StartRunner(RunnerOptions{Binary: protorunner, ConfExpire: time.Millisecond}); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestRunnerCannotStripHeader101(t *testing.T) {
	// ngx.req.get_headers() hands the runner 100 headers; the upstream gets
	// them all. A header past the 100th is invisible to the runner, and
	// v0.5.0 sends deletions only for headers it saw, so Del cannot strip it.
	// A plugin that strips identity headers must Set them or fail closed when
	// it sees 100 headers.
	r := startRunner(t, RunnerOptions{})
	g := newGateway(t, r)
	h := http.Header{"X-Userinfo": {"forged"}}
	for i := 0; i < 100; i++ {
		h.Set(fmt.Sprintf("X-Pad-%03d", i), "p") // sorts before x-userinfo
	}
	res := do(t, g, route(PluginConf{"rewrite", `{"del_header":["X-Userinfo"]}`}), &Request{Header: h})
	if res.UpstreamHeader.Get("X-Userinfo") != "forged" {
		t.Fatalf("header 101 was stripped: the 100-header cap is not modelled")
	}
	res = do(t, g, route(PluginConf{"rewrite", `{"set_header":{"X-Userinfo":"trusted"}}`}), &Request{Header: h})
	if got := res.UpstreamHeader.Values("X-Userinfo"); len(got) != 1 || got[0] != "trusted" {
		t.Fatalf("Set must replace the unseen header: %v", got)
	}
}
