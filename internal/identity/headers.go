// Package identity is the one home of what both plugins share: the X-Userinfo
// codec, the shapes of Keycloak's organization claim, identity header names and
// the header stripping rule, and the hand-off between plugins of one chain.
package identity

import (
	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// Headers set by APISIX's openid-connect plugin for a logged-in user.
const (
	HeaderUserinfo    = "X-Userinfo"
	HeaderAccessToken = "X-Access-Token"
	HeaderIDToken     = "X-ID-Token"
	HeaderRawIDToken  = "X-Raw-ID-Token"
	// HeaderRefreshToken is sent with set_refresh_token_header. Keycloak
	// signs refresh tokens with a realm secret, so nothing outside Keycloak
	// can verify one: the runner always removes it.
	HeaderRefreshToken = "X-Refresh-Token"
)

// KeyIDToken and KeyRawIDToken are HeaderIDToken and HeaderRawIDToken as
// the runner library keys them (textproto's canonical form), for DelCanonical
// and lookups on the hot path.
const (
	KeyIDToken    = "X-Id-Token"
	KeyRawIDToken = "X-Raw-Id-Token"
)

// canonicalWriter is the patched runner library's header writer for keys
// already canonical (third_party/apisix-go-plugin-runner, patch 7).
type canonicalWriter interface {
	SetCanonical(key, value string)
	DelCanonical(key string)
}

// SetCanonical sets the header key, which must be canonical
// (textproto.CanonicalMIMEHeaderKey(key) == key: the constants here, a
// configured name canonicalised once), without the library checking its
// letter case again.
func SetCanonical(h pkgHTTP.Header, key, value string) {
	if w, ok := h.(canonicalWriter); ok {
		w.SetCanonical(key, value)
		return
	}
	h.Set(key, value)
}

// DelCanonical deletes the header key, which must be canonical; see
// SetCanonical.
func DelCanonical(h pkgHTTP.Header, key string) {
	if w, ok := h.(canonicalWriter); ok {
		w.DelCanonical(key)
		return
	}
	h.Del(key)
}

// Headers this project emits by default.
const (
	HeaderAssertion  = "X-Identity-Assertion"
	HeaderUserID     = "X-User-Id"
	HeaderUserEmail  = "X-User-Email"
	HeaderUserOrgs   = "X-User-Orgs"
	HeaderOrgsSource = "X-User-Orgs-Source"
)

// EmittedHeaders are the headers the runner's plugins write by default: a
// client's copy of any of them, in any spelling, is removed (or refused when
// repeated) before anything is read.
var EmittedHeaders = []string{HeaderAssertion, HeaderOrgsSource, HeaderUserID, HeaderUserEmail, HeaderUserOrgs}

// OIDCHeaders are the headers openid-connect sets. Only their hyphenated names
// can come from openid-connect; the spelling with "_" is always a client's.
var OIDCHeaders = []string{HeaderUserinfo, HeaderAccessToken, HeaderIDToken, HeaderRawIDToken, HeaderRefreshToken}

// UnverifiedOIDCHeaders are the openid-connect headers that reach the upstream
// only when userinfo verified them on this request (the ID token headers), or
// never (the refresh token): every other path removes them in any spelling.
var UnverifiedOIDCHeaders = []string{HeaderIDToken, HeaderRawIDToken, HeaderRefreshToken}

// NormalizeName folds a header name the way a proxy that accepts underscores
// (APISIX ships underscores_in_headers on) lets an upstream see it: lower case,
// "_" read as "-". Two names with the same normal form reach many frameworks as
// the same header (CGI/WSGI map both to HTTP_X_USERINFO).
func NormalizeName(name string) string {
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + ('a' - 'A')
		case c == '_':
			b[i] = '-'
		}
	}
	return string(b)
}

// StripRule decides which incoming headers are removed before identity is
// read, and which may not be repeated.
type StripRule struct {
	// names are normalized identity header names; the first len(OIDCHeaders)
	// are openid-connect's, the rest are emitted by the runner.
	names []string
}

// MaxIdentityHeaders bounds how many names one rule watches: the
// openid-connect headers, the runner's own and a route's claim headers.
const MaxIdentityHeaders = 64

// NewStripRule removes every spelling of each name in always, and the
// underscore spellings of the openid-connect headers.
func NewStripRule(always ...string) *StripRule {
	r := &StripRule{}
	seen := map[string]bool{}
	for _, n := range append(append([]string{}, OIDCHeaders...), always...) {
		norm := NormalizeName(n)
		if !seen[norm] {
			seen[norm] = true
			r.names = append(r.names, norm)
		}
	}
	return r
}

// index returns the rule entry the header name is a spelling of, or -1. It
// folds case and '_' without allocating: it runs for every header of every
// request, on a map key or on the request frame's bytes.
func index[T ~string | ~[]byte](r *StripRule, name T) int {
	for i, norm := range r.names {
		if len(norm) == len(name) && sameNormalized(name, norm) {
			return i
		}
	}
	return -1
}

func sameNormalized[T ~string | ~[]byte](name T, norm string) bool {
	for i := 0; i < len(name); i++ {
		if fold(name[i]) != norm[i] {
			return false
		}
	}
	return true
}

// fold is what NormalizeName does to one byte.
func fold(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		c += 'a' - 'A'
	case c == '_':
		c = '-'
	}
	return c
}

// Matches reports whether an incoming header of this name is to be removed.
func (r *StripRule) Matches(name string) bool { return matches(r, name) }

func matches[T ~string | ~[]byte](r *StripRule, name T) bool {
	return matchesAt(index(r, name), name)
}

// matchesAt is matches for a name whose index in the rule is known.
func matchesAt[T ~string | ~[]byte](i int, name T) bool {
	if i < 0 {
		return false
	}
	if i < len(OIDCHeaders) {
		// openid-connect writes only the hyphenated name: the spelling
		// with '_' is always a client's.
		return hasUnderscore(name)
	}
	return true
}

func hasUnderscore[T ~string | ~[]byte](name T) bool {
	for i := 0; i < len(name); i++ {
		if name[i] == '_' {
			return true
		}
	}
	return false
}

// Strip deletes every matching header and returns how many it removed. It walks
// the header map itself because the runner's Header can only Get, Set and Del
// one canonical name, which never reaches "X_userinfo".
func (r *StripRule) Strip(h pkgHTTP.Header) int {
	removed := 0
	for name := range h.View() {
		if r.Matches(name) {
			h.Del(name)
			removed++
		}
	}
	return removed
}

// Scan reads the request's headers once and returns how many values they
// hold in all (APISIX hands the runner only the first 100) and the identity
// header carried more than once, in any spellings together ("X-User-Orgs"
// twice, or "X-User-Orgs" and "x_user_orgs"), or "" when none is. An
// upstream reading such a header may see any of the values, or all of them
// joined: such a request is refused, never cleaned up.
func (r *StripRule) Scan(h pkgHTTP.Header) (values int, repeated string) {
	s := scan{rule: r}
	for name, vs := range h.View() {
		scanAdd(&s, name, len(vs))
	}
	return s.values, s.repeated
}

// scan is Scan's count, fed one header name (map key or frame bytes) and
// its number of values at a time.
type scan struct {
	rule     *StripRule
	counts   [MaxIdentityHeaders]uint8
	values   int
	repeated string
}

func scanAdd[T ~string | ~[]byte](s *scan, name T, values int) {
	if s.repeated != "" {
		s.values += values
		return
	}
	scanAt(s, index(s.rule, name), values)
}

// scanAt is scanAdd for a header whose index in the rule is known.
func scanAt(s *scan, i, values int) {
	s.values += values
	if s.repeated != "" {
		return
	}
	if i < 0 || i >= MaxIdentityHeaders {
		return
	}
	n := int(s.counts[i]) + values
	if n > 1 {
		s.repeated = headerDisplayName(s.rule.names[i])
		return
	}
	s.counts[i] = uint8(n)
}

// headerDisplayName writes a normalized name in the usual capitalisation, for
// messages.
func headerDisplayName(norm string) string {
	b := []byte(norm)
	up := true
	for i, c := range b {
		if up && c >= 'a' && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
		up = c == '-'
	}
	return string(b)
}

// DeleteAllSpellings removes every spelling of the given names.
func DeleteAllSpellings(h pkgHTTP.Header, names ...string) {
	want := make(map[string]struct{}, len(names))
	for _, n := range names {
		want[NormalizeName(n)] = struct{}{}
	}
	for name := range h.View() {
		if _, ok := want[NormalizeName(name)]; ok {
			h.Del(name)
		}
	}
}

// SanitizeValue makes a claim value safe as a header value: control characters
// (CR and LF above all) would let a claim a user controls, such as their name,
// inject headers.
func SanitizeValue(v string) string {
	clean := true
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return v
	}
	b := []byte(v)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}
