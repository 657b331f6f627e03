// Package emit is the one place that turns a proven identity into what the
// upstream receives: X-Userinfo, the claim headers, X-User-Orgs-Source and
// the signed identity assertion. main builds one Emitter and hands it to
// both plugins: userinfo emits the token's view, orgsync emits again with
// Keycloak's current data. Rendering, signing and reuse live here, keyed by
// what decides the output (the login, the route's settings, the refreshed
// value), so no plugin keeps state about another's output.
package emit

import (
	"bytes"
	"errors"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/lru"
)

// ErrNoSigningKey: a route signs an assertion and the emitter has no key.
var ErrNoSigningKey = errors.New("emit: no assertion signing key loaded")

// Options configure an Emitter.
type Options struct {
	// Keys sign the assertion. nil: a route with an assertion fails with
	// ErrNoSigningKey (and userinfo answers 500 no_signing_key).
	Keys *assertion.KeyRing
	// AssertionBytes bounds the signed assertions kept for reuse. Default:
	// the assertion package's (8 MiB).
	AssertionBytes int64
	// RenderingBytes bounds the renderings kept for reuse. Default
	// DefaultRenderingBytes.
	RenderingBytes int64
}

// DefaultRenderingBytes is the default budget of the renderings kept.
const DefaultRenderingBytes = 16 << 20

// noAssertionReuse is how long a rendering without an assertion is reused:
// it holds nothing that expires, only the login's claims.
const noAssertionReuse = time.Hour

// Emitter renders, signs and writes identities. Safe for concurrent use.
type Emitter struct {
	keys       *assertion.KeyRing
	reuser     *assertion.Reuser
	renderings *lru.Cache[renderKey, *rendering]
	routes     routes
	logins     atomic.Uint64
	signed     atomic.Int64
	now        func() time.Time
}

// New builds an Emitter.
func New(o Options) *Emitter {
	if o.RenderingBytes <= 0 {
		o.RenderingBytes = DefaultRenderingBytes
	}
	return &Emitter{keys: o.Keys, reuser: assertion.NewReuser(o.AssertionBytes),
		renderings: lru.New[renderKey, *rendering](o.RenderingBytes), routes: routes{all: map[string]*Route{}},
		now: time.Now}
}

// Keys are the key ring that signs the assertions (nil: none).
func (e *Emitter) Keys() *assertion.KeyRing { return e.keys }

// NewLogin names a newly proven login. Names are never given twice by one
// Emitter, so a rendering kept for one login is never written for another.
func (e *Emitter) NewLogin() identity.Login { return identity.Login(e.logins.Add(1)) }

// Signed is how many assertions this emitter signed (reused ones not counted).
func (e *Emitter) Signed() int64 { return e.signed.Load() }

// Route is what a route's config decides about emission: the claim headers
// and the assertion. Routes with equal settings share one *Route (see
// Emitter.Route), so a rendering survives APISIX preparing the same route
// again. A Route never changes once made.
type Route struct {
	headers   []ClaimHeader
	assertion *Assertion
}

// ClaimHeader is one upstream header carrying a claim.
type ClaimHeader struct {
	// Header is the header name, canonical.
	Header string
	// Claim is the claim it carries: lists are joined with ",", sub is the
	// subject, organization gives the aliases.
	Claim string
}

// Assertion are a route's settings of the signed identity assertion.
type Assertion struct {
	Header   string
	Audience string
	Issuer   string
	TTL      time.Duration
}

// Refresh says what a plugin after userinfo changed in the identity, the
// zero value for userinfo's own output. On one login and route, equal
// Settings, Source and Value mean equal output.
type Refresh struct {
	// Settings spell the refreshing plugin's settings that shape its output
	// (orgsync: the shape written, the claims refreshed), one string per
	// distinct combination.
	Settings string
	// Source is the organization source written to X-User-Orgs-Source and
	// the assertion's organization_source; "" without a refresh.
	Source string
	// Value is the data the change was computed from (orgsync: the cached
	// snapshot). Kept, not copied: the caller must not change it.
	Value []byte
	// Now is the request's time as the caller read it; zero: the emitter
	// reads the clock. Not part of what the output depends on.
	Now time.Time
}

// nowFor is ref.Now, or the clock when the caller read none.
func (e *Emitter) nowFor(ref Refresh) time.Time {
	if ref.Now.IsZero() {
		return e.now()
	}
	return ref.Now
}

// renderKey is where a rendering is kept: one per login, route and
// refreshing settings; a refresh with another source or value replaces it.
type renderKey struct {
	login    identity.Login
	route    *Route
	settings string
}

// kept reports whether renderings of id are kept for reuse: only those of a
// login proven once and reused (login 0 is an identity taken as sent on one
// request; the next request of "the same" user may send other claims).
func kept(id identity.Identity) bool {
	return id.Login() != 0
}

func keyOf(id identity.Identity, route *Route, ref Refresh) renderKey {
	return renderKey{login: id.Login(), route: route, settings: ref.Settings}
}

// rendering is what was written upstream for one key, reusable until
// reuseUntil while the refresh it came from is the same.
type rendering struct {
	source     string
	value      []byte
	headers    [][2]string
	reuseUntil time.Time
}

// maxRoutes bounds the interned settings; past it a config gets a Route of
// its own (its renderings are then not shared with equal configs).
const maxRoutes = 1024

type routes struct {
	mu  sync.Mutex
	all map[string]*Route
}

// Route returns the one *Route of these settings.
func (e *Emitter) Route(headers []ClaimHeader, a *Assertion) *Route {
	r := &Route{headers: append([]ClaimHeader(nil), headers...)}
	// Canonical once here, so that every request writes them as they are.
	for i := range r.headers {
		r.headers[i].Header = textproto.CanonicalMIMEHeaderKey(r.headers[i].Header)
	}
	var key bytes.Buffer
	for _, h := range r.headers {
		key.WriteString(h.Header)
		key.WriteByte(0)
		key.WriteString(h.Claim)
		key.WriteByte(0)
	}
	if a != nil {
		copied := *a
		copied.Header = textproto.CanonicalMIMEHeaderKey(copied.Header)
		r.assertion = &copied
		key.WriteByte(1)
		for _, s := range []string{r.assertion.Header, a.Audience, a.Issuer, a.TTL.String()} {
			key.WriteString(s)
			key.WriteByte(0)
		}
	}
	e.routes.mu.Lock()
	defer e.routes.mu.Unlock()
	if existing, ok := e.routes.all[key.String()]; ok {
		return existing
	}
	if len(e.routes.all) < maxRoutes {
		e.routes.all[key.String()] = r
	}
	return r
}

// Emit writes id's headers and assertion under route, as refreshed by ref,
// to h. What was written for the same login, route and refresh is written
// again without being rendered or signed anew, until the assertion is half
// its ttl old.
func (e *Emitter) Emit(h pkgHTTP.Header, id identity.Identity, route *Route, ref Refresh) error {
	if e.Replay(h, id, route, ref) {
		return nil
	}
	out, err := e.render(id, route, ref)
	if err != nil {
		return err
	}
	if kept(id) {
		e.renderings.Add(keyOf(id, route, ref), out, out.size())
	}
	write(h, out.headers)
	return nil
}

// Replay writes what was written before for id's login under route and an
// equal refresh, and reports false (writing nothing) when there is none to
// reuse: then the caller builds the refreshed identity and calls Emit. It
// looks at id's login only, so a refreshing plugin asks before it does the
// work of refreshing.
func (e *Emitter) Replay(h pkgHTTP.Header, id identity.Identity, route *Route, ref Refresh) bool {
	if !kept(id) {
		return false
	}
	out, ok := e.renderings.Get(keyOf(id, route, ref))
	if !ok || out.source != ref.Source || !bytes.Equal(out.value, ref.Value) || !e.nowFor(ref).Before(out.reuseUntil) {
		return false
	}
	write(h, out.headers)
	return true
}

// write writes a rendering's headers, whose names are canonical: Route
// made the configured ones so, and the fixed ones are (TestRenderedNamesAreCanonical).
func write(h pkgHTTP.Header, headers [][2]string) {
	for _, kv := range headers {
		if kv[1] == "" {
			identity.DelCanonical(h, kv[0])
		} else {
			identity.SetCanonical(h, kv[0], kv[1])
		}
	}
}

// size is about what a rendering takes in memory.
func (r *rendering) size() int64 {
	n := 160 + len(r.source) + len(r.value)
	for _, kv := range r.headers {
		n += len(kv[0]) + len(kv[1]) + 32
	}
	return int64(n)
}
