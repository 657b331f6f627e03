// Package runnertest has an in-memory pkgHTTP.Request that behaves like the
// runner's own (v0.5.0): headers are filled with http.Header.Add, so names are
// canonicalised, Set/Del/Get fold case, and View exposes the map.
package runnertest

import (
	"context"
	"net"
	"net/http"
	"net/url"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// Request is a fake runner request. ConfToken lets tests stand for a route.
type Request struct {
	RequestID uint32
	Token     uint32
	MethodV   string
	PathV     []byte
	Hdr       *Header
	ArgsV     url.Values
	BodyV     []byte
	// VarsV answers Var (APISIX's ctx.var); a name it lacks is nil.
	VarsV map[string]string
	// VarCalls counts Var calls: each is a round trip to APISIX.
	VarCalls int
	Ctx      context.Context
	respHdr  http.Header
}

var _ pkgHTTP.Request = (*Request)(nil)

// NewRequest makes a GET request with the given headers (each added as the
// runner adds APISIX's lower-case names).
func NewRequest(id, token uint32, headers map[string]string) *Request {
	h := &Header{h: http.Header{}}
	for k, v := range headers {
		h.h.Add(k, v)
	}
	return &Request{RequestID: id, Token: token, MethodV: http.MethodGet, PathV: []byte("/"), Hdr: h, ArgsV: url.Values{}}
}

func (r *Request) ID() uint32             { return r.RequestID }
func (r *Request) ConfToken() uint32      { return r.Token }
func (r *Request) SrcIP() net.IP          { return net.IPv4(127, 0, 0, 1) }
func (r *Request) Method() string         { return r.MethodV }
func (r *Request) Path() []byte           { return r.PathV }
func (r *Request) SetPath(p []byte)       { r.PathV = p }
func (r *Request) Header() pkgHTTP.Header { return r.Hdr }
func (r *Request) Args() url.Values       { return r.ArgsV }
func (r *Request) Body() ([]byte, error)  { return r.BodyV, nil }
func (r *Request) Var(name string) ([]byte, error) {
	r.VarCalls++
	if v, ok := r.VarsV[name]; ok {
		return []byte(v), nil
	}
	return nil, nil
}
func (r *Request) Context() context.Context {
	if r.Ctx != nil {
		return r.Ctx
	}
	return context.Background()
}
func (r *Request) RespHeader() http.Header {
	if r.respHdr == nil {
		r.respHdr = http.Header{}
	}
	return r.respHdr
}

// Header is the runner's header type in miniature.
type Header struct{ h http.Header }

func (h *Header) Set(k, v string)     { h.h.Set(k, v) }
func (h *Header) Del(k string)        { h.h.Del(k) }
func (h *Header) Get(k string) string { return h.h.Get(k) }
func (h *Header) View() http.Header   { return h.h }

// SetContext stands for the patched runner library's per-request context
// slot (third_party/apisix-go-plugin-runner).
func (r *Request) SetContext(ctx context.Context) { r.Ctx = ctx }
