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
	m := r.sweep(v)
	values, repeated = m.scan.values, m.scan.repeated
	m.put()
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
	m := r.sweep(v)
	values, repeated = m.scan.values, m.scan.repeated
	removed = deleteKeys(req, m.keys)
	m.put()
	return values, repeated, removed
}

// StripRequest is Strip on the request's headers, found in place when the
// request is the runner library's: the same headers deleted (through
// Header().Del, so the plugins after see it) and the same count.
func (r *StripRule) StripRequest(req pkgHTTP.Request) int {
	if _, ok := req.(headerViews); !ok {
		return r.Strip(req.Header())
	}
	_, _, removed := r.ScanStripRequest(req)
	return removed
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
	m.keys = m.keys[:0]
	v.RangeHeaderNames(m.visitNames)
	deleteKeys(req, m.keys)
	m.put()
}

// deleteKeys deletes the map keys a walk collected, after it: a walk must
// not see its own changes. It returns how many there were.
func deleteKeys(req pkgHTTP.Request, keys []string) int {
	h := req.Header()
	for _, k := range keys {
		h.Del(k)
	}
	return len(keys)
}

// sweep walks the request's headers once under the rule: the scan's count
// and verdict, and the keys of the headers the rule strips.
func (r *StripRule) sweep(v headerViews) *matcher {
	m := matchers.Get().(*matcher)
	m.rule = r
	m.scan = scan{rule: r}
	m.keys = m.keys[:0]
	v.RangeHeaderNames(m.visitRule)
	return m
}

// matcher is one walk of a request's headers: under a StripRule (sweep) it
// counts as Scan does and collects the keys Strip deletes; with names
// (DeleteAllSpellingsOf) it collects every spelling of them. It copies the
// distinct matching keys (names as sent folded to map keys): the deletions
// come after the walk, which must not see its own changes, and a key with
// several values counts once, as in the map. Pooled with its visit funcs
// bound once: a func handed to RangeHeaderNames, an interface method,
// escapes, and would cost two allocations per request.
type matcher struct {
	rule  *StripRule // sweep's rule, or
	names []string   // DeleteAllSpellingsOf's names
	scan  scan
	keys  []string
	// visitRule and visitNames are the walks' callbacks.
	visitRule, visitNames func(name, value []byte) bool
}

var matchers = sync.Pool{New: func() any {
	m := &matcher{}
	m.visitRule = func(name, _ []byte) bool {
		i := index(m.rule, name)
		scanAt(&m.scan, i, 1)
		if matchesAt(i, name) {
			m.collect(name)
		}
		return true
	}
	m.visitNames = func(name, _ []byte) bool {
		for _, n := range m.names {
			if len(n) == len(name) && sameFolded(name, n) {
				m.collect(name)
				break
			}
		}
		return true
	}
	return m
}}

// collect keeps the map key of a header name to delete, once.
func (m *matcher) collect(name []byte) {
	// Only a forged or to-be-removed header gets here: its map key, the
	// one Del and the map count by, costs a string.
	key := textproto.CanonicalMIMEHeaderKey(string(name))
	for _, k := range m.keys {
		if k == key {
			return
		}
	}
	m.keys = append(m.keys, key)
}

func (m *matcher) put() {
	clear(m.keys)
	m.rule, m.names, m.scan = nil, nil, scan{}
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
