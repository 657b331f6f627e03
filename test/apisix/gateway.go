package apisix

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	A6 "github.com/api7/ext-plugin-proto/go/A6"
	A6Err "github.com/api7/ext-plugin-proto/go/A6/Err"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
)

// Numbers init.lua and nginx use.
const (
	// keepalivePoolSize: sock:setkeepalive(180 * 1000, 32).
	keepalivePoolSize = 32
	// keepaliveTimeout: idle pooled connections are closed after 180 s.
	keepaliveTimeout = 180 * time.Second
	// connectTimeout, ioTimeout: sock:settimeouts(1000, 60000, 60000).
	connectTimeout = time.Second
	ioTimeout      = 60 * time.Second
	// tokenTTL: helper.get_conf_token_cache_time(), the lrucache TTL.
	tokenTTL = 3600 * time.Second
	// maxTries: _M.communicate tries three times on "conf token not found".
	maxTries = 3
	// maxHeaders: ngx.req.get_headers() returns at most 100 headers by
	// default and core.request.headers passes no limit. (Args are not
	// capped: core.request.get_uri_args calls ngx.req.get_uri_args(0).)
	maxHeaders = 100
)

// DefaultPlugin is the APISIX plugin a Route runs in when Route.Plugin is
// empty: the access-phase plugin that runs after openid-connect.
const DefaultPlugin = "ext-plugin-post-req"

// errConfTokenNotFound matches the runner's CONF_TOKEN_NOT_FOUND error frame.
var errConfTokenNotFound = &rpcError{Code: A6Err.CodeCONF_TOKEN_NOT_FOUND}

// PluginConf is one entry of the ext-plugin conf list: a runner plugin name and
// its configuration as a JSON string.
type PluginConf struct {
	Name  string
	Value string
}

// Route is the part of an APISIX route the ext-plugin sees.
type Route struct {
	// ID is the route id; it is part of the conf token key.
	ID string
	// Plugin is "ext-plugin-post-req" (the default) or "ext-plugin-pre-req".
	Plugin string
	// Conf is the plugin's "conf" list. Nil means the plugin conf has no list
	// ("ext-plugin-post-req": {}), which runs nothing; an empty non-nil list is
	// refused, as APISIX's schema (minItems 1) refuses it.
	Conf []PluginConf
}

// Request is the client request as APISIX holds it when the plugin runs.
type Request struct {
	// Method defaults to GET. Methods outside A6.Method are refused.
	Method string
	// Path is $uri, the decoded path without query. Default "/".
	Path string
	// Args is the query string, sent to the runner sorted by name. A bare flag
	// ("?debug", sent without value) cannot be expressed; "" sends an
	// empty value.
	Args url.Values
	// Header holds the request headers, Host included. The runner gets the first 100 values
	// (sorted by lower-case name) with lower-case names, as
	// ngx.req.get_headers() gives them; `host` carries the upstream host.
	Header http.Header
	// SrcIP is the client address ($remote_addr). Default "127.0.0.1".
	SrcIP string
	// Vars answers ExtraInfo Var requests first; unknown names fall back to a
	// few built-in variables (remote_addr, uri, args, request_uri,
	// request_method, host, scheme, route_id, http_*, arg_*).
	Vars map[string]string
	// Body answers ExtraInfo ReqBody requests; empty means no body.
	Body []byte
}

// Result is what the client and the upstream see after the ext-plugin ran.
type Result struct {
	// Status is the status the client gets: the Stop status (0 becomes 200),
	// 503 when the runner call failed, or 200 from the stand-in upstream when
	// the request went on (Upstream is true).
	Status int
	// Upstream reports whether the request went on to the upstream.
	Upstream bool
	// UpstreamPath is the path the upstream gets: Request.Path, or the
	// Rewrite path escaped as nginx's ngx_escape_uri does (space, '#', '%',
	// '?', control and non-ASCII bytes).
	UpstreamPath string
	// UpstreamArgs is the query the upstream gets.
	UpstreamArgs url.Values
	// UpstreamHeader is the request headers the upstream gets.
	UpstreamHeader http.Header
	// UpstreamHost is the Host the upstream gets (a Rewrite `host` header
	// changes it).
	UpstreamHost string
	// ResponseHeader holds the headers APISIX adds to the client response:
	// Stop headers, or Rewrite response headers.
	ResponseHeader http.Header
	// Body is the Stop body.
	Body []byte
	// ExtraInfoCalls counts ExtraInfo round trips the runner made.
	ExtraInfoCalls int
	// PrepareConfCalls counts PrepareConf round trips made for this request.
	PrepareConfCalls int
	// Err says why the client got 503: the line APISIX writes to error.log.
	Err error
}

// Gateway plays one APISIX worker talking to a runner over its unix socket.
// It is safe for concurrent use; each call in flight uses its own connection.
type Gateway struct {
	socket string

	mu     sync.Mutex
	idle   []idleConn // most recently used last
	tokens map[string]tokenEntry
	closed bool

	nextID atomic.Uint32
	dials  atomic.Int64
}

type idleConn struct {
	c     net.Conn
	since time.Time
}

type tokenEntry struct {
	token   uint32
	expires time.Time
}

// NewGateway returns a Gateway that connects to the runner socket path.
func NewGateway(socket string) *Gateway {
	return &Gateway{socket: socket, tokens: map[string]tokenEntry{}}
}

// Dials returns how many connections the gateway has opened so far.
func (g *Gateway) Dials() int { return int(g.dials.Load()) }

// Close closes the idle connections. Connections in use are closed when
// their call ends; later calls still work but no longer pool connections.
func (g *Gateway) Close() {
	g.mu.Lock()
	idle := g.idle
	g.idle = nil
	g.closed = true
	g.mu.Unlock()
	for _, ic := range idle {
		_ = ic.c.Close()
	}
}

// FlushTokens drops every cached conf token, as APISIX does when its runner
// exits (recreate_lrucache on the runner_exit event).
func (g *Gateway) FlushTokens() {
	g.mu.Lock()
	g.tokens = map[string]tokenEntry{}
	g.mu.Unlock()
}

// Do runs one request through the route's ext-plugin, like
// ext-plugin/init.lua's _M.communicate. A runner failure is a Result with
// Status 503; the error is only for a route or request APISIX would refuse.
func (g *Gateway) Do(ctx context.Context, route *Route, req *Request) (*Result, error) {
	st, err := newCallState(route, req)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	for try := 0; try < maxTries; try++ {
		err = g.call(ctx, st, res)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, errConfTokenNotFound) {
			break
		}
		// "refresh cache and try again"
		g.FlushTokens()
	}
	return &Result{
		Status:           http.StatusServiceUnavailable,
		ResponseHeader:   http.Header{},
		ExtraInfoCalls:   res.ExtraInfoCalls,
		PrepareConfCalls: res.PrepareConfCalls,
		Err:              err,
	}, nil
}

// callState is the request as prepared once per Do.
type callState struct {
	route   *Route
	plugin  string
	key     string // lrucache key: route#<id>#<plugin>#<version>
	method  A6.Method
	req     *Request
	srcIP   []byte
	args    url.Values  // the args table init.lua sends
	header  http.Header // canonical copy of Request.Header
	host    string      // upstream host
	argList []textEntry
	hdrList []textEntry
}

func newCallState(route *Route, req *Request) (*callState, error) {
	if route == nil || req == nil {
		return nil, errors.New("apisix: nil route or request")
	}
	if route.Conf != nil && len(route.Conf) == 0 {
		return nil, fmt.Errorf("apisix: route %q: conf list must have at least 1 item", route.ID)
	}
	for i, c := range route.Conf {
		if len(c.Name) < 1 || len(c.Name) > 128 {
			return nil, fmt.Errorf("apisix: route %q: conf[%d] name %q must be 1 to 128 bytes", route.ID, i, c.Name)
		}
	}
	st := &callState{route: route, req: req, plugin: route.Plugin}
	if st.plugin == "" {
		st.plugin = DefaultPlugin
	}
	st.key = "route#" + route.ID + "#" + st.plugin + "#" + confVersion(route.Conf)

	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	m, ok := A6.EnumValuesMethod[method]
	if !ok {
		return nil, fmt.Errorf("apisix: method %q has no A6.Method value", method)
	}
	st.method = m

	ip := req.SrcIP
	if ip == "" {
		ip = "127.0.0.1"
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("apisix: src ip %q: %w", ip, err)
	}
	st.srcIP = addr.AsSlice() // $binary_remote_addr: 4 bytes for IPv4, 16 for IPv6

	// Args: sorted names, each value an entry.
	st.args = url.Values{}
	names := make([]string, 0, len(req.Args))
	for n := range req.Args {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, v := range req.Args[n] {
			st.argList = append(st.argList, textEntry{Name: n, Value: strp(v)})
			st.args.Add(n, v)
		}
	}

	// Headers: lower-case names, sorted, the first 100 values only; `host`
	// is sent with the upstream host ($upstream_host).
	st.header = http.Header{}
	lower := map[string][]string{}
	for n, vs := range req.Header {
		for _, v := range vs {
			st.header.Add(n, v)
		}
		l := strings.ToLower(n)
		lower[l] = append(lower[l], vs...)
	}
	st.host = req.Vars["upstream_host"]
	if st.host == "" {
		st.host = st.header.Get("Host")
	}
	hnames := make([]string, 0, len(lower))
	for n := range lower {
		hnames = append(hnames, n)
	}
	sort.Strings(hnames)
	for _, n := range hnames {
		for _, v := range lower[n] {
			if len(st.hdrList) == maxHeaders {
				break
			}
			if n == "host" {
				v = st.host
			}
			st.hdrList = append(st.hdrList, textEntry{Name: n, Value: strp(v)})
		}
	}
	return st, nil
}

// confVersion stands in for APISIX's conf_version: it changes whenever the
// conf list changes, so a changed route gets a new token key (the runner
// caches tokens by key).
func confVersion(conf []PluginConf) string {
	if conf == nil {
		return "0"
	}
	h := fnv.New64a()
	for _, c := range conf {
		fmt.Fprintf(h, "%d:%s%d:%s", len(c.Name), c.Name, len(c.Value), c.Value)
	}
	return strconv.FormatUint(h.Sum64()%1e12, 10)
}

// call is one try: init.lua's rpc_call(RPC_HTTP_REQ_CALL).
func (g *Gateway) call(ctx context.Context, st *callState, res *Result) error {
	conn, err := g.acquire(ctx)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if ok {
			g.release(conn)
		} else {
			_ = conn.Close()
		}
	}()

	token, err := g.token(ctx, st, res)
	if err != nil {
		return err
	}

	payload := encodeHTTPReqCall(&httpReqCall{
		ID:        (g.nextID.Add(1) - 1) & (1<<22 - 1), // worker 0: id = count mod 2^22
		ConfToken: token,
		SrcIP:     st.srcIP,
		Method:    st.method,
		Path:      pathOr(st.req.Path),
		Args:      st.argList,
		Headers:   st.hdrList,
	})
	stop := watch(ctx, conn)
	defer stop()
	if err := send(conn, TypeHTTPReqCall, payload); err != nil {
		return fmt.Errorf("failed to send RPC_HTTP_REQ_CALL: %w", err)
	}
	var ty byte
	var body []byte
	for {
		ty, body, err = receive(conn)
		if err != nil {
			return fmt.Errorf("failed to receive RPC_HTTP_REQ_CALL: %w", err)
		}
		if ty != TypeExtraInfo {
			break
		}
		res.ExtraInfoCalls++
		out, err := g.extraInfo(st, body)
		if err != nil {
			return fmt.Errorf("failed to handle RPC_EXTRA_INFO: %w", err)
		}
		if err := send(conn, TypeExtraInfo, out); err != nil {
			return fmt.Errorf("failed to reply RPC_EXTRA_INFO: %w", err)
		}
	}
	if ty != TypeHTTPReqCall {
		return fmt.Errorf("failed to receive RPC_HTTP_REQ_CALL: unexpected type %d", ty)
	}
	a, err := decodeHTTPReqCallResp(body)
	if err != nil {
		return fmt.Errorf("failed to receive RPC_HTTP_REQ_CALL: %w", err)
	}
	apply(st, a, res)
	ok = true
	return nil
}

// token returns the route's conf token, sending PrepareConf on its own
// connection when the cache has none (rpc_call(RPC_PREPARE_CONF) nested in
// the HTTPReqCall handler).
func (g *Gateway) token(ctx context.Context, st *callState, res *Result) (uint32, error) {
	g.mu.Lock()
	te, found := g.tokens[st.key]
	g.mu.Unlock()
	if found && time.Now().Before(te.expires) {
		return te.token, nil
	}

	conn, err := g.acquire(ctx)
	if err != nil {
		return 0, err
	}
	stop := watch(ctx, conn)
	defer stop()
	token, err := func() (uint32, error) {
		res.PrepareConfCalls++
		if err := send(conn, TypePrepareConf, encodePrepareConf(st.key, st.route.Conf)); err != nil {
			return 0, fmt.Errorf("failed to send RPC_PREPARE_CONF: %w", err)
		}
		ty, body, err := receive(conn)
		if err != nil {
			return 0, fmt.Errorf("failed to receive RPC_PREPARE_CONF: %w", err)
		}
		if ty != TypePrepareConf {
			return 0, fmt.Errorf("failed to receive RPC_PREPARE_CONF: unexpected type %d", ty)
		}
		t, err := decodePrepareConfResp(body)
		if err != nil {
			return 0, fmt.Errorf("failed to receive RPC_PREPARE_CONF: %w", err)
		}
		return t, nil
	}()
	if err != nil {
		_ = conn.Close()
		return 0, err
	}
	g.release(conn)

	g.mu.Lock()
	g.tokens[st.key] = tokenEntry{token: token, expires: time.Now().Add(tokenTTL)}
	g.mu.Unlock()
	return token, nil
}

// extraInfo answers one ExtraInfo request, like init.lua's handle_extra_info.
func (g *Gateway) extraInfo(st *callState, body []byte) ([]byte, error) {
	r, err := decodeExtraInfoReq(body)
	if err != nil {
		return nil, err
	}
	var result []byte
	switch r.Type {
	case ei.InfoVar:
		if v, ok := lookupVar(st, r.Var); ok {
			result = []byte(v)
		}
	case ei.InfoReqBody:
		if len(st.req.Body) > 0 {
			result = st.req.Body
		}
	case ei.InfoRespBody:
		// No upstream response exists in the request phase: APISIX logs
		// "failed to read response body: not exits" and answers no result.
	default:
		return nil, fmt.Errorf("unsupported info type: %d", r.Type)
	}
	return encodeExtraInfoResp(result), nil
}

// lookupVar resolves ctx.var[name] for the request.
func lookupVar(st *callState, name string) (string, bool) {
	req := st.req
	if v, ok := req.Vars[name]; ok {
		return v, true
	}
	query := url.Values(st.args).Encode()
	switch name {
	case "remote_addr", "realip_remote_addr":
		addr, _ := netip.AddrFromSlice(st.srcIP)
		return addr.String(), true
	case "binary_remote_addr":
		return string(st.srcIP), true
	case "uri":
		return pathOr(req.Path), true
	case "args", "query_string":
		return query, true
	case "is_args":
		if query != "" {
			return "?", true
		}
		return "", true
	case "request_uri":
		if query != "" {
			return pathOr(req.Path) + "?" + query, true
		}
		return pathOr(req.Path), true
	case "request_method", "method":
		return A6.EnumNamesMethod[st.method], true
	case "host":
		h := st.header.Get("Host")
		if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
			h = h[:i]
		}
		return strings.ToLower(h), true
	case "upstream_host":
		return st.host, true
	case "scheme":
		return "http", true
	case "route_id":
		return st.route.ID, true
	}
	if n, ok := strings.CutPrefix(name, "arg_"); ok {
		if vs := st.args[n]; len(vs) > 0 {
			return vs[0], true
		}
		return "", false
	}
	if n, ok := strings.CutPrefix(name, "http_"); ok {
		// nginx matches $http_x_foo against both X-Foo and X_Foo and joins
		// repeated headers with ", " ("; " for Cookie).
		want := strings.ReplaceAll(strings.ToLower(n), "-", "_")
		var vals []string
		for h, vs := range st.header {
			if strings.ReplaceAll(strings.ToLower(h), "-", "_") == want {
				vals = append(vals, vs...)
			}
		}
		if len(vals) == 0 {
			return "", false
		}
		sep := ", "
		if want == "cookie" {
			sep = "; "
		}
		return strings.Join(vals, sep), true
	}
	return "", false
}

func pathOr(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// excludeRespHeader: response headers a Rewrite may not set (init.lua).
var excludeRespHeader = map[string]bool{
	"connection": true, "content-length": true, "transfer-encoding": true,
	"location": true, "server": true, "www-authenticate": true,
	"content-encoding": true, "content-type": true, "content-location": true,
	"content-language": true,
}

// apply applies the runner's answer to the request, as init.lua does.
func apply(st *callState, a *action, res *Result) {
	res.ResponseHeader = http.Header{}
	switch a.Type {
	case hrc.ActionStop:
		seen := map[string]bool{}
		for _, e := range a.StopHeader {
			n := strings.ToLower(e.Name)
			v := ""
			if e.Value != nil {
				v = *e.Value
			}
			if seen[n] {
				res.ResponseHeader.Add(n, v)
			} else {
				res.ResponseHeader.Set(n, v)
				seen[n] = true
			}
		}
		res.Body = a.Body
		res.Status = int(a.Status)
		if res.Status == 0 { // "avoid using 0 as the default http status code"
			res.Status = http.StatusOK
		}
		return
	}

	// Pass-through or Rewrite: the request goes on to the upstream.
	res.Status = http.StatusOK
	res.Upstream = true
	res.UpstreamPath = pathOr(st.req.Path)
	res.UpstreamHeader = st.header.Clone()
	res.UpstreamHost = st.host
	res.UpstreamArgs = url.Values{}
	for n, vs := range st.req.Args {
		res.UpstreamArgs[n] = append([]string(nil), vs...)
	}
	if a.Type != hrc.ActionRewrite {
		return
	}

	if a.Path != nil {
		res.UpstreamPath = escapeURI(*a.Path)
	}
	for _, e := range a.Headers {
		// core.request.set_header: a missing or empty value deletes.
		for h := range res.UpstreamHeader {
			if strings.EqualFold(h, e.Name) {
				delete(res.UpstreamHeader, h)
			}
		}
		if e.Value != nil && *e.Value != "" {
			res.UpstreamHeader.Set(e.Name, *e.Value)
		}
		if strings.EqualFold(e.Name, "host") {
			res.UpstreamHost = ""
			if e.Value != nil {
				res.UpstreamHost = *e.Value
			}
		}
	}
	seen := map[string]bool{}
	for _, e := range a.RespHeaders {
		n := strings.ToLower(e.Name)
		if excludeRespHeader[n] {
			continue
		}
		v := ""
		if e.Value != nil {
			v = *e.Value
		}
		if seen[n] {
			res.ResponseHeader.Add(n, v)
		} else {
			res.ResponseHeader.Set(n, v)
			seen[n] = true
		}
	}
	if len(a.Args) > 0 {
		// set_uri_args replaces the whole query with the edited table.
		args := url.Values{}
		for n, vs := range st.args {
			args[n] = append([]string(nil), vs...)
		}
		changed := map[string]bool{}
		for _, e := range a.Args {
			switch {
			case e.Value == nil:
				delete(args, e.Name)
			case changed[e.Name]:
				args[e.Name] = append(args[e.Name], *e.Value)
			default:
				args[e.Name] = []string{*e.Value}
				changed[e.Name] = true
			}
		}
		res.UpstreamArgs = args
	}
}

// escapeURI escapes like nginx's ngx_escape_uri(NGX_ESCAPE_URI), which
// core.utils.uri_safe_encode calls: control bytes, space, '#', '%', '?',
// DEL and every byte above 0x7f.
func escapeURI(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c == '#' || c == '%' || c == '?' || c >= 0x7f {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// send and receive are init.lua's send and receive: an error frame becomes
// an error carrying err_to_msg's text.
func send(c net.Conn, ty byte, payload []byte) error {
	if err := c.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		return err
	}
	return WriteFrame(c, ty, payload)
}

func receive(c net.Conn) (byte, []byte, error) {
	if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return 0, nil, err
	}
	ty, body, err := ReadFrame(c)
	if err != nil {
		return 0, nil, err
	}
	if ty == TypeError {
		return 0, nil, decodeError(body)
	}
	return ty, body, nil
}

// watch closes the connection's deadlines when ctx ends; the returned func
// stops watching.
func watch(ctx context.Context, c net.Conn) func() {
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	return func() { stop() }
}

// acquire takes an idle connection (the most recent one, as the cosocket
// pool does) or dials a new one.
func (g *Gateway) acquire(ctx context.Context) (net.Conn, error) {
	for {
		g.mu.Lock()
		if len(g.idle) == 0 {
			g.mu.Unlock()
			break
		}
		ic := g.idle[len(g.idle)-1]
		g.idle = g.idle[:len(g.idle)-1]
		g.mu.Unlock()
		// nginx drops a pooled connection when it times out or when the
		// peer closes it while idle.
		if time.Since(ic.since) < keepaliveTimeout && alive(ic.c) {
			return ic.c, nil
		}
		_ = ic.c.Close()
	}
	d := net.Dialer{Timeout: connectTimeout}
	c, err := d.DialContext(ctx, "unix", g.socket)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to the unix socket unix:%s: %w", g.socket, err)
	}
	g.dials.Add(1)
	return c, nil
}

// release puts a connection back in the pool (sock:setkeepalive(180000, 32)).
func (g *Gateway) release(c net.Conn) {
	_ = c.SetDeadline(time.Time{})
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || len(g.idle) >= keepalivePoolSize {
		_ = c.Close()
		return
	}
	g.idle = append(g.idle, idleConn{c: c, since: time.Now()})
}

// alive peeks at an idle connection without blocking: EOF or unread data
// means it can't be reused.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	live := true
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK:
			live = true
		case rerr != nil, n == 0, n > 0:
			live = false
		}
		return true
	})
	return err == nil && live
}
