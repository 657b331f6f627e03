// Package identity is the one home of what both plugins share: the X-Userinfo
// codec, the shapes of Keycloak's organization claim, identity header names and
// the header stripping rule, and the hand-off between plugins of one chain.
package identity

import (
	"strings"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// Headers set by APISIX's openid-connect plugin for a logged-in user.
const (
	HeaderUserinfo    = "X-Userinfo"
	HeaderAccessToken = "X-Access-Token"
	HeaderIDToken     = "X-ID-Token"
	HeaderRawIDToken  = "X-Raw-ID-Token"
)

// Headers this project emits by default.
const (
	HeaderAssertion  = "X-Identity-Assertion"
	HeaderUserID     = "X-User-Id"
	HeaderUserEmail  = "X-User-Email"
	HeaderUserOrgs   = "X-User-Orgs"
	HeaderOrgsSource = "X-User-Orgs-Source"
)

// OIDCHeaders are the headers openid-connect sets. Only their hyphenated names
// can come from openid-connect; the spelling with "_" is always a client's.
var OIDCHeaders = []string{HeaderUserinfo, HeaderAccessToken, HeaderIDToken, HeaderRawIDToken}

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

// StripRule decides which incoming headers are removed before identity is read.
type StripRule struct {
	// always: every spelling of these normalized names is removed.
	always map[string]struct{}
	// underscored: only spellings containing "_" are removed; the hyphenated
	// name is left for the verifier, which tells openid-connect's from a forgery.
	underscored map[string]struct{}
}

// NewStripRule removes every spelling of each name in always, and the
// underscore spellings of the openid-connect headers.
func NewStripRule(always ...string) *StripRule {
	r := &StripRule{always: map[string]struct{}{}, underscored: map[string]struct{}{}}
	for _, n := range always {
		r.always[NormalizeName(n)] = struct{}{}
	}
	for _, n := range OIDCHeaders {
		r.underscored[NormalizeName(n)] = struct{}{}
	}
	return r
}

// Matches reports whether an incoming header of this name is to be removed.
func (r *StripRule) Matches(name string) bool {
	norm := NormalizeName(name)
	if _, ok := r.always[norm]; ok {
		return true
	}
	if _, ok := r.underscored[norm]; ok {
		return strings.IndexByte(name, '_') >= 0
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
