package identity

import (
	"net/textproto"
	"sync"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// headerViews is what the patched runner library's Request adds (its
// PATCHES.md, row 7): header values read from the request frame without
// copying. The views are read-only and die with the request: whatever is
// kept past it must be copied (string(b)).
type headerViews interface {
	HeaderBytes(key string) ([]byte, bool)
	// RangeHeaderNames hands each header under its name as sent, whose
	// textproto.CanonicalMIMEHeaderKey is the header's map key: the scans
	// fold letter case themselves, so the library need not write the keys.
	RangeHeaderNames(fn func(name, value []byte) bool)
}

// HeaderBytes is the first value of the header key, as Header().Get gives
// it: a view of the request frame when the request is the runner
// library's (read-only, valid until the request ends), a copy otherwise.
// Empty and absent are both nil.
func HeaderBytes(r pkgHTTP.Request, key string) []byte {
	if v, ok := r.(headerViews); ok {
		b, _ := v.HeaderBytes(key)
		if len(b) == 0 {
			return nil
		}
		return b
	}
	if s := r.Header().Get(key); s != "" {
		return []byte(s)
	}
	return nil
}

// ScanRequest is Scan over the request's headers, read in place when the
// request is the runner library's: the same count and the same verdict
// without building the header map.
func (r *StripRule) ScanRequest(req pkgHTTP.Request) (values int, repeated string) {
	v, ok := req.(headerViews)
	if !ok {
		return r.Scan(req.Header())
	}
	s := scans.Get().(*scan)
	*s = scan{rule: r, visit: s.visit}
	v.RangeHeaderNames(s.visit)
	values, repeated = s.values, s.repeated
	s.rule = nil
	scans.Put(s)
	return values, repeated
}

// ScanStripRequest is ScanRequest and then StripRequest in one walk of the
// headers: the same count and verdict, and the same headers deleted (all of
// them even when the verdict refuses the request: a refused request is
// answered, not passed on, so what was deleted does not matter).
func (r *StripRule) ScanStripRequest(req pkgHTTP.Request) (values int, repeated string, removed int) {
	v, ok := req.(headerViews)
	if !ok {
		values, repeated = r.Scan(req.Header())
		return values, repeated, r.Strip(req.Header())
	}
	m := matchers.Get().(*matcher)
	m.rule = r
	m.scanning = true
	m.scan = scan{rule: r}
	keys := m.walk(v)
	values, repeated = m.scan.values, m.scan.repeated
	h := req.Header()
	for _, k := range keys {
		h.Del(k)
	}
	m.put()
	return values, repeated, len(keys)
}

// scans hold a scan with its visit func bound once: a func handed to
// RangeHeaderNames, an interface method, escapes, and would cost two
// allocations per request.
var scans = sync.Pool{New: func() any {
	s := &scan{}
	s.visit = func(key, _ []byte) bool {
		scanAdd(s, key, 1)
		return true
	}
	return s
}}

// StripRequest is Strip on the request's headers, found in place when the
// request is the runner library's: the same headers deleted (through
// Header().Del, so the plugins after see it) and the same count.
func (r *StripRule) StripRequest(req pkgHTTP.Request) int {
	v, ok := req.(headerViews)
	if !ok {
		return r.Strip(req.Header())
	}
	m := matchers.Get().(*matcher)
	m.rule = r
	keys := m.walk(v)
	h := req.Header()
	for _, k := range keys {
		h.Del(k)
	}
	m.put()
	return len(keys)
}

// DeleteAllSpellingsOf is DeleteAllSpellings on the request's headers,
// found in place when the request is the runner library's.
func DeleteAllSpellingsOf(req pkgHTTP.Request, names ...string) {
	v, ok := req.(headerViews)
	if !ok {
		DeleteAllSpellings(req.Header(), names...)
		return
	}
	m := matchers.Get().(*matcher)
	m.names = names
	keys := m.walk(v)
	h := req.Header()
	for _, k := range keys {
		h.Del(k)
	}
	m.put()
}

// matcher finds the keys StripRequest or DeleteAllSpellingsOf delete. It
// copies the distinct matching keys (names as sent folded to map keys): the deletions come after the walk,
// which must not see its own changes, and a key with several values counts
// once, as in the map. Pooled with its visit func bound, as scans are.
type matcher struct {
	rule  *StripRule // StripRequest's rule, or
	names []string   // DeleteAllSpellingsOf's names
	// scan, when set, counts as ScanRequest does in the same walk
	// (ScanStripRequest); it shares the rule's name lookup with the match.
	scanning bool
	scan     scan
	keys     []string
	visit    func(key, value []byte) bool
	// scanVisit is visit with the scan (ScanStripRequest).
	scanVisit func(key, value []byte) bool
}

var matchers = sync.Pool{New: func() any {
	m := &matcher{}
	m.visit = func(name, _ []byte) bool {
		if !m.match(name) {
			return true
		}
		return m.collect(name)
	}
	m.scanVisit = func(name, _ []byte) bool {
		i := index(m.rule, name)
		scanAt(&m.scan, i, 1)
		if i < 0 || i < len(OIDCHeaders) && !hasUnderscore(name) {
			return true
		}
		return m.collect(name)
	}
	return m
}}

// collect keeps the map key of a header name to delete, once.
func (m *matcher) collect(name []byte) bool {
	// Only a forged or to-be-removed header gets here: its map key, the
	// one Del and the map count by, costs a string.
	key := textproto.CanonicalMIMEHeaderKey(string(name))
	for _, k := range m.keys {
		if k == key {
			return true
		}
	}
	m.keys = append(m.keys, key)
	return true
}

func (m *matcher) walk(v headerViews) []string {
	m.keys = m.keys[:0]
	if m.scanning {
		v.RangeHeaderNames(m.scanVisit)
	} else {
		v.RangeHeaderNames(m.visit)
	}
	return m.keys
}

func (m *matcher) match(key []byte) bool {
	if m.rule != nil {
		return matches(m.rule, key)
	}
	for _, n := range m.names {
		if len(n) == len(key) && sameFolded(key, n) {
			return true
		}
	}
	return false
}

func (m *matcher) put() {
	clear(m.keys)
	m.rule, m.names = nil, nil
	m.scanning, m.scan = false, scan{}
	matchers.Put(m)
}

// sameFolded reports whether two names have the same NormalizeName, without
// building either.
func sameFolded(a []byte, b string) bool {
	for i := range a {
		if fold(a[i]) != fold(b[i]) {
			return false
		}
	}
	return true
}
