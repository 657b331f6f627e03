package identity

import (
	"context"
	"net"
	"net/http"
	"net/url"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// fakeHeader behaves as the runner's internal/http Header in v0.5.0: it embeds
// an http.Header, so Set, Del and Get canonicalise the name, and View returns
// the map itself.
type fakeHeader struct{ http.Header }

func (h *fakeHeader) View() http.Header { return h.Header }

var _ pkgHTTP.Header = (*fakeHeader)(nil)

// newFakeHeader fills the header the way the runner does for a request from
// APISIX: hh.Add(name, value), so names reach the plugin canonicalised by
// net/http ("x_USERINFO" becomes "X_userinfo").
func newFakeHeader(pairs ...string) *fakeHeader {
	h := &fakeHeader{Header: http.Header{}}
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Add(pairs[i], pairs[i+1])
	}
	return h
}

// fakeRequest is a pooled request object: the runner reuses one object for
// many requests, changing only its ID and conf token.
type fakeRequest struct {
	id    uint32
	token uint32
	hdr   *fakeHeader
}

var _ pkgHTTP.Request = (*fakeRequest)(nil)

func (r *fakeRequest) ConfToken() uint32 { return r.token }
func (r *fakeRequest) ID() uint32        { return r.id }
func (r *fakeRequest) SrcIP() net.IP     { return net.IPv4(127, 0, 0, 1) }
func (r *fakeRequest) Method() string    { return http.MethodGet }
func (r *fakeRequest) Path() []byte      { return []byte("/") }
func (r *fakeRequest) SetPath([]byte)    {}
func (r *fakeRequest) Header() pkgHTTP.Header {
	if r.hdr == nil {
		r.hdr = newFakeHeader()
	}
	return r.hdr
}
func (r *fakeRequest) Args() url.Values           { return url.Values{} }
func (r *fakeRequest) Var(string) ([]byte, error) { return nil, nil }
func (r *fakeRequest) Body() ([]byte, error)      { return nil, nil }
func (r *fakeRequest) Context() context.Context   { return context.Background() }
func (r *fakeRequest) RespHeader() http.Header    { return http.Header{} }

// tokenlessRequest hides ConfToken: only pkgHTTP.Request's methods are
// promoted, as with a request type from another runner version.
type tokenlessRequest struct{ pkgHTTP.Request }
