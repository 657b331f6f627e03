package access

import (
	"errors"
	"fmt"
	"strings"
)

// Values of Tenant.By.
const (
	TenantByAlias = "alias"
	TenantByID    = "id"
)

// Placeholder marks the tenant in a path or host template.
const Placeholder = "{org}"

// Tenant says where a request names its organization; exactly one of Path,
// Host and Header. The organization named must be one of the user's current
// ones, whatever the route's require says.
type Tenant struct {
	// Path is a template of the path's first segments ending in the tenant:
	// "/orgs/{org}" reads acme from /orgs/acme/invoices.
	Path string `json:"path,omitempty"`
	// Host is a template of the whole host: "{org}.apps.example.org" reads
	// acme from acme.apps.example.org (a port is ignored).
	Host string `json:"host,omitempty"`
	// Header is a request header the gateway sets (proxy-rewrite headers.set
	// overwrites what the client sent): its value is the tenant.
	Header string `json:"header,omitempty"`
	// By is what the request names the organization by: "alias" (default)
	// or "id" (Keycloak's UUID).
	By string `json:"by,omitempty"`

	prefix []string // Path's literal segments before the tenant
	suffix string   // Host's part after the tenant, with its leading dot
	header string   // Header, normalized (lower case, '-' for '_')
}

func (t *Tenant) compile() error {
	set := 0
	for _, v := range []string{t.Path, t.Host, t.Header} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return errors.New(`"tenant": want exactly one of "path", "host" and "header"`)
	}
	switch t.By {
	case "":
		t.By = TenantByAlias
	case TenantByAlias, TenantByID:
	default:
		return fmt.Errorf(`"tenant.by" %q: want "alias" or "id"`, t.By)
	}
	switch {
	case t.Path != "":
		segs := strings.Split(t.Path, "/")
		if segs[0] != "" || len(segs) < 2 || segs[len(segs)-1] != Placeholder {
			return fmt.Errorf(`"tenant.path" %q: want a path ending in the segment %s, such as "/orgs/%s"`, t.Path, Placeholder, Placeholder)
		}
		t.prefix = segs[1 : len(segs)-1]
		for _, s := range t.prefix {
			if !pathValue(s) {
				return fmt.Errorf(`"tenant.path" %q: segment %q: want letters, digits, '-', '.', '_' or '~' only, one %s at the end`,
					t.Path, s, Placeholder)
			}
		}
	case t.Host != "":
		rest, ok := strings.CutPrefix(t.Host, Placeholder)
		if !ok || !strings.HasPrefix(rest, ".") || !hostSuffix(rest[1:]) {
			return fmt.Errorf(`"tenant.host" %q: want %s followed by a lower-case domain, such as "%s.apps.example.org"`,
				t.Host, Placeholder, Placeholder)
		}
		t.suffix = rest
	default:
		for i := 0; i < len(t.Header); i++ {
			c := t.Header[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf(`"tenant.header" %q: want letters, digits, '-' and '_' only`, t.Header)
			}
		}
		t.header = strings.ReplaceAll(strings.ToLower(t.Header), "_", "-")
	}
	return nil
}

// Request is what a tenant is read from, as the runner received it.
type Request struct {
	// Path is the path APISIX sent: $uri (decoded and normalized by nginx)
	// unless a plugin before set $upstream_uri.
	Path string
	// RawURI returns the request-target the client sent (APISIX's
	// $real_request_uri), which is what the upstream gets by default. Called
	// only for a path tenant.
	RawURI func() (string, error)
	// Host is the `host` header APISIX sent ($upstream_host: by default the
	// client's Host header as sent).
	Host string
	// Header returns the value of a header named in any spelling (case,
	// '_' for '-') and how many values there are in all spellings.
	Header func(normalized string) (value string, n int)
}

// Read returns the tenant the request names, or the reason to refuse it
// with (400): ReasonTenantMissing or ReasonTenantAmbiguous. Anything the
// upstream could read as another organization than the runner does is
// ambiguous.
func (t *Tenant) Read(req Request) (string, string) {
	switch {
	case t.Path != "":
		return t.fromPath(req)
	case t.Host != "":
		return t.fromHost(req.Host)
	}
	v, n := req.Header(t.header)
	switch {
	case n == 0 || v == "":
		return "", ReasonTenantMissing
	case n > 1 || !pathValue(v):
		return "", ReasonTenantAmbiguous
	}
	return v, ""
}

// fromPath reads the tenant from the path. APISIX sends $uri, which nginx
// has percent-decoded, merged slashes in and resolved "." and ".." in; by
// default the upstream gets the raw request-target instead. So the raw form
// must say the same: decoding it must give exactly the path the runner got
// (nginx changed nothing else), it must hold no encoded '/' or '\' (which
// $uri shows as a separator and an upstream may not), and every segment up
// to and including the tenant must be written plainly.
func (t *Tenant) fromPath(req Request) (string, string) {
	segs := strings.Split(req.Path, "/")
	if segs[0] != "" || len(segs) < len(t.prefix)+2 {
		return "", ReasonTenantMissing
	}
	for i, lit := range t.prefix {
		if segs[1+i] != lit {
			return "", ReasonTenantMissing
		}
	}
	value := segs[1+len(t.prefix)]
	if value == "" {
		return "", ReasonTenantMissing
	}
	if !pathValue(value) {
		return "", ReasonTenantAmbiguous
	}
	// A later part of the path naming an organization again
	// (/orgs/acme/orgs/globex) is read differently by different routers.
	if rest := segs[2+len(t.prefix):]; len(t.prefix) > 0 {
		for i := 0; i+len(t.prefix) < len(rest); i++ {
			if equalFoldSegs(rest[i:i+len(t.prefix)], t.prefix) {
				return "", ReasonTenantAmbiguous
			}
		}
	}
	for _, s := range segs {
		if s == "." || s == ".." {
			return "", ReasonTenantAmbiguous
		}
	}
	if req.RawURI == nil {
		return "", ReasonTenantAmbiguous
	}
	raw, err := req.RawURI()
	if err != nil || raw == "" {
		return "", ReasonTenantAmbiguous
	}
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	decoded, ok := percentDecode(raw)
	// APISIX's delete_uri_tail_slash drops a trailing '/' from $uri only.
	if !ok || decoded != req.Path && decoded != req.Path+"/" {
		return "", ReasonTenantAmbiguous
	}
	lower := strings.ToLower(raw)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(raw, "\\") {
		return "", ReasonTenantAmbiguous
	}
	rawSegs := strings.SplitN(raw, "/", len(t.prefix)+3)
	for i := 0; i <= len(t.prefix)+1; i++ {
		if rawSegs[i] != segs[i] {
			return "", ReasonTenantAmbiguous
		}
	}
	return value, ""
}

func equalFoldSegs(a, b []string) bool {
	for i := range b {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

// fromHost reads the tenant from the Host header as sent: APISIX routes on
// nginx's $host (lower-cased, port and a trailing dot removed) but sends the
// runner, and by default the upstream, the Host header as the client wrote
// it. A port is dropped; upper case, a trailing dot, anything but ASCII
// letters, digits and '-' in the tenant, are refused rather than folded.
func (t *Tenant) fromHost(host string) (string, string) {
	if host == "" {
		return "", ReasonTenantMissing
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		port := host[i+1:]
		if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return "", ReasonTenantAmbiguous
		}
		host = host[:i]
	}
	for _, c := range []byte(host) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return "", ReasonTenantAmbiguous
		}
	}
	label, ok := strings.CutSuffix(host, t.suffix)
	if !ok {
		if strings.HasSuffix(host, ".") {
			return "", ReasonTenantAmbiguous
		}
		return "", ReasonTenantMissing
	}
	if label == "" || strings.Contains(label, ".") || len(label) > 63 ||
		label[0] == '-' || label[len(label)-1] == '-' ||
		// An IDNA A-label is how a browser sends a Unicode host: it shows
		// the user a look-alike of another organization's name.
		strings.HasPrefix(label, "xn--") {
		return "", ReasonTenantAmbiguous
	}
	return label, ""
}

// member reports whether the organization the request named is one of the
// user's current ones.
func (t *Tenant) member(f *Facts, tenant string) bool {
	if tenant == "" {
		return false
	}
	for _, o := range f.Orgs {
		if t.By == TenantByID && o.ID == tenant || t.By != TenantByID && o.Alias == tenant {
			return true
		}
	}
	return false
}

// pathValue: a non-empty path segment of URL-unreserved ASCII only, and not
// a dot segment. Anything else (a '%' left by a double encoding, a Unicode
// look-alike) is read differently by different parsers.
func pathValue(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func hostSuffix(s string) bool {
	if s == "" || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// percentDecode decodes every %XX, as nginx does for $uri; false on a '%'
// not followed by two hex digits.
func percentDecode(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
			return "", false
		}
		b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
		i += 2
	}
	return b.String(), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
