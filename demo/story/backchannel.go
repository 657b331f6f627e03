package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
)

// backchannelPath is where the front takes Keycloak's logout tokens, the
// path conf/apisix.yaml gives the back-channel logout route.
const backchannelPath = "/identity/backchannel-logout"

// front plays APISIX's HTTP side for the back-channel logout route: Keycloak
// POSTs a logout token to it, and it hands the request to the runner through
// the plugin runner protocol, as APISIX's ext-plugin does, and answers
// Keycloak with the runner's answer. What it received is kept for the story
// to tell.
type front struct {
	srv   *http.Server
	ln    net.Listener
	gw    *apisix.Gateway
	route *apisix.Route

	mu   sync.Mutex
	seen []delivery
}

// delivery is one logout token Keycloak sent and the runner's answer.
type delivery struct {
	sid, sub string // of the logout token
	status   int
	body     string
}

func startFront(gw *apisix.Gateway, route *apisix.Route) (*front, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &front{ln: ln, gw: gw, route: route}
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

func (f *front) url() string { return "http://" + f.ln.Addr().String() + backchannelPath }

func (f *front) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != backchannelPath {
		http.NotFound(w, req)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	h := req.Header.Clone()
	h.Set("Content-Length", strconv.Itoa(len(body)))
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	res, err := f.gw.Do(ctx, f.route, &apisix.Request{Method: req.Method, Path: req.URL.Path, Header: h,
		SrcIP: "127.0.0.1", Body: body})
	if err != nil {
		http.Error(w, "runner call failed", http.StatusBadGateway)
		return
	}
	d := delivery{status: res.Status, body: strings.TrimSpace(string(res.Body))}
	if form, err := url.ParseQuery(string(body)); err == nil {
		d.sid, d.sub = logoutTokenSubject(form.Get("logout_token"))
	}
	f.mu.Lock()
	f.seen = append(f.seen, d)
	f.mu.Unlock()
	for k, v := range res.ResponseHeader {
		w.Header()[k] = v
	}
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body)
}

// take returns what arrived since the last call.
func (f *front) take() []delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.seen
	f.seen = nil
	return out
}

func (f *front) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
}

// logoutTokenSubject reads sid and sub of a logout token for the story's
// telling only: the runner is what verifies it.
func logoutTokenSubject(raw string) (sid, sub string) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", ""
	}
	var c struct {
		SID string `json:"sid"`
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(b, &c)
	return c.SID, c.Sub
}
