// Command protorunner is a runner on apisix-go-plugin-runner v0.5.0 with
// small plugins that exercise each part of the protocol; the tests of package
// apisix build and drive it.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"
	"github.com/apache/apisix-go-plugin-runner/pkg/runner"
)

func main() {
	for _, p := range []plugin.Plugin{&stop{}, &rewrite{}, &extra{}, &panicky{}, &echo{}, &badConf{}} {
		if err := plugin.RegisterPlugin(p); err != nil {
			fmt.Fprintf(os.Stderr, "register %s: %v\n", p.Name(), err)
			os.Exit(1)
		}
	}
	runner.Run(runner.RunnerConfig{})
}

func decode[T any](in []byte) (any, error) {
	var c T
	if err := json.Unmarshal(in, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// stop answers the client itself: WriteHeader only when status is not 0.
type stop struct{ plugin.DefaultPlugin }

type stopConf struct {
	Status int               `json:"status"`
	Header map[string]string `json:"header"`
	Body   string            `json:"body"`
}

func (*stop) Name() string                     { return "stop" }
func (*stop) ParseConf(in []byte) (any, error) { return decode[stopConf](in) }
func (*stop) RequestFilter(conf any, w http.ResponseWriter, _ pkgHTTP.Request) {
	c := conf.(*stopConf)
	for k, v := range c.Header {
		w.Header().Set(k, v)
	}
	if c.Status != 0 {
		w.WriteHeader(c.Status)
	}
	_, _ = w.Write([]byte(c.Body))
}

// rewrite changes the request on its way to the upstream.
type rewrite struct{ plugin.DefaultPlugin }

type rewriteConf struct {
	DelHeader  []string          `json:"del_header"`
	SetHeader  map[string]string `json:"set_header"`
	Path       string            `json:"path"`
	DelArg     []string          `json:"del_arg"`
	SetArg     map[string]string `json:"set_arg"`
	AddArg     map[string]string `json:"add_arg"`
	RespHeader map[string]string `json:"resp_header"`
}

func (*rewrite) Name() string                     { return "rewrite" }
func (*rewrite) ParseConf(in []byte) (any, error) { return decode[rewriteConf](in) }
func (*rewrite) RequestFilter(conf any, _ http.ResponseWriter, r pkgHTTP.Request) {
	c := conf.(*rewriteConf)
	for _, h := range c.DelHeader {
		r.Header().Del(h)
	}
	for k, v := range c.SetHeader {
		r.Header().Set(k, v)
	}
	if c.Path != "" {
		r.SetPath([]byte(c.Path))
	}
	for _, a := range c.DelArg {
		r.Args().Del(a)
	}
	for k, v := range c.SetArg {
		r.Args().Set(k, v)
	}
	for k, v := range c.AddArg {
		r.Args().Add(k, v)
	}
	for k, v := range c.RespHeader {
		r.RespHeader().Set(k, v)
	}
}

// extra asks APISIX for variables and the body and passes them upstream as
// headers X-Var-<name> and X-Body (X-Err on failure).
type extra struct{ plugin.DefaultPlugin }

type extraConf struct {
	Vars []string `json:"vars"`
	Body bool     `json:"body"`
}

func (*extra) Name() string                     { return "extra" }
func (*extra) ParseConf(in []byte) (any, error) { return decode[extraConf](in) }
func (*extra) RequestFilter(conf any, _ http.ResponseWriter, r pkgHTTP.Request) {
	c := conf.(*extraConf)
	for _, name := range c.Vars {
		v, err := r.Var(name)
		if err != nil {
			r.Header().Set("X-Err", err.Error())
			return
		}
		r.Header().Set("X-Var-"+name, fmt.Sprintf("%q", v))
	}
	if c.Body {
		b, err := r.Body()
		if err != nil {
			r.Header().Set("X-Err", err.Error())
			return
		}
		r.Header().Set("X-Body", fmt.Sprintf("%q", b))
	}
}

// panicky panics: v0.5.0 recovers in the connection goroutine and closes it.
type panicky struct{ plugin.DefaultPlugin }

func (*panicky) Name() string                  { return "panic" }
func (*panicky) ParseConf([]byte) (any, error) { return nil, nil }
func (*panicky) RequestFilter(any, http.ResponseWriter, pkgHTTP.Request) {
	panic("protorunner: planned panic")
}

// echo answers with what the runner saw of the request, as JSON.
type echo struct{ plugin.DefaultPlugin }

type echoed struct {
	ID     uint32              `json:"id"`
	Method string              `json:"method"`
	Path   string              `json:"path"`
	SrcIP  string              `json:"src_ip"`
	Args   map[string][]string `json:"args"`
	Header map[string][]string `json:"header"`
}

func (*echo) Name() string                  { return "echo" }
func (*echo) ParseConf([]byte) (any, error) { return nil, nil }
func (*echo) RequestFilter(_ any, w http.ResponseWriter, r pkgHTTP.Request) {
	// Header().View() is keyed by canonical names; walk the raw entries
	// through View to report them as received.
	out := echoed{
		ID:     r.ID(),
		Method: r.Method(),
		Path:   string(r.Path()),
		SrcIP:  r.SrcIP().String(),
		Args:   r.Args(),
		Header: r.Header().View(),
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// badConf never parses: v0.5.0 skips it and the request goes on.
type badConf struct{ plugin.DefaultPlugin }

func (*badConf) Name() string { return "badconf" }
func (*badConf) ParseConf([]byte) (any, error) {
	return nil, fmt.Errorf("badconf: refused")
}
func (*badConf) RequestFilter(_ any, w http.ResponseWriter, _ pkgHTTP.Request) {
	w.WriteHeader(http.StatusForbidden)
}
