package identity

import (
	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// headerViews is what the patched runner library's Request adds (its
// PATCHES.md, row 7): header values read from the request frame without
// copying. The views are read-only and die with the request: whatever is
// kept past it must be copied (string(b)).
type headerViews interface {
	HeaderBytes(key string) ([]byte, bool)
	RangeHeaders(fn func(key, value []byte) bool)
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
	s := scan{rule: r}
	v.RangeHeaders(func(key, _ []byte) bool {
		scanAdd(&s, key, 1)
		return true
	})
	return s.values, s.repeated
}

// StripRequest is Strip on the request's headers, found in place when the
// request is the runner library's: the same headers deleted (through
// Header().Del, so the plugins after see it) and the same count.
func (r *StripRule) StripRequest(req pkgHTTP.Request) int {
	v, ok := req.(headerViews)
	if !ok {
		return r.Strip(req.Header())
	}
	keys := matchingKeys(v, func(key []byte) bool { return matches(r, key) })
	h := req.Header()
	for _, k := range keys {
		h.Del(k)
	}
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
	keys := matchingKeys(v, func(key []byte) bool {
		for _, n := range names {
			if len(n) == len(key) && sameFolded(key, n) {
				return true
			}
		}
		return false
	})
	h := req.Header()
	for _, k := range keys {
		h.Del(k)
	}
}

// matchingKeys copies the distinct keys match accepts: the deletions come
// after the walk, which must not see its own changes, and a key with
// several values counts once, as in the map.
func matchingKeys(v headerViews, match func(key []byte) bool) []string {
	var keys []string
	v.RangeHeaders(func(key, _ []byte) bool {
		if !match(key) {
			return true
		}
		for _, k := range keys {
			if k == string(key) {
				return true
			}
		}
		keys = append(keys, string(key))
		return true
	})
	return keys
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
