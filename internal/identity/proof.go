package identity

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// Identity is a user proven on this request. A proven Identity is shared by
// every request of the same login (it is reused per X-Userinfo and token
// pair): plugins copy it before changing anything.
type Identity struct {
	// Subject is the Keycloak user id (sub), equal in X-Userinfo and the token.
	Subject string
	// Issuer is the verified token's iss ("" when verify_token is false).
	Issuer string
	// Claims are the claims upstreams may trust: with a verified token, only
	// those the token carries (X-Userinfo's other claims are dropped).
	Claims Claims
	// Orgs is the organization claim; orgsync may replace it.
	Orgs Organizations
	// TokenVerified is true when a signed access token proved the identity
	// (userinfo's verify_token), false when X-Userinfo was trusted as sent.
	TokenVerified bool
	// OrgsSource says where orgsync took Orgs from ("keycloak", "cache",
	// "stale" or "token"); "" when no orgsync ran, and then no
	// X-User-Orgs-Source header is sent.
	OrgsSource string
	// Refresh identifies what a later plugin (orgsync) applied, nil before:
	// equal Refresh on the same login means equal output, so the emitter can
	// reuse what it wrote last time.
	Refresh *Refresh
	// Memo holds the emitter's last output for this login; shared by copies.
	Memo *Memo
}

// Refresh says what a plugin after userinfo changed in an identity.
type Refresh struct {
	// By stands for the refreshing plugin's settings (shape, claims), one
	// value per distinct config.
	By any
	// Source is the organization source it reports.
	Source string
	// Value is the cached value the change was computed from.
	Value []byte
}

// Equal reports whether a and b describe the same change.
func (a *Refresh) Equal(b *Refresh) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.By == b.By && a.Source == b.Source && bytes.Equal(a.Value, b.Value)
}

// Rendering is what an emitter wrote upstream for one identity: the header
// values (an empty value deletes the header), the signed assertion among
// them, valid for reuse until ReuseUntil.
type Rendering struct {
	Refresh    *Refresh
	Headers    [][2]string
	ReuseUntil time.Time
	// Profile stands for the emitter's settings (headers, assertion
	// audience): a route with other settings renders anew.
	Profile any
	// Signer is the key ring that signed the assertion: a new key means a
	// new assertion at once.
	Signer any
}

// Memo keeps the last rendering of a login, one slot for userinfo's own
// (token claims) and one for the refreshed output of a later plugin, so that
// a chain of both reuses each instead of overwriting one with the other.
type Memo struct {
	token     atomic.Pointer[Rendering]
	refreshed atomic.Pointer[Rendering]
}

// Load returns the rendering stored for refresh (nil: userinfo's own).
func (m *Memo) Load(refresh *Refresh) *Rendering {
	if m == nil {
		return nil
	}
	if refresh == nil {
		return m.token.Load()
	}
	return m.refreshed.Load()
}

// Store keeps r in the slot its Refresh names.
func (m *Memo) Store(r *Rendering) {
	if m == nil {
		return
	}
	if r.Refresh == nil {
		m.token.Store(r)
		return
	}
	m.refreshed.Store(r)
}

// Emitter writes an identity's trusted headers and signed assertion to the
// upstream request. userinfo's route config is the emitter; orgsync calls it
// again after replacing the organizations, so headers and assertion always
// agree.
type Emitter interface {
	// Emit renders and writes id (or writes what it wrote before for the
	// same login, settings and refresh, while that may be reused).
	Emit(r pkgHTTP.Request, id *Identity) error
	// Replay writes what was written before for the same login, settings
	// and refresh, and reports false (writing nothing) when there is none
	// to reuse: then the caller finishes id and calls Emit.
	Replay(r pkgHTTP.Request, id *Identity) bool
}

// Proof is what userinfo leaves on a request for the plugins after it: the
// identity it proved and the emitter of its route.
type Proof struct {
	Identity *Identity
	Emitter  Emitter
}

type proofKey struct{}

// contextSetter is the per-request context slot of the patched runner
// library (third_party/apisix-go-plugin-runner): what is attached lives and
// dies with this request, on this request only.
type contextSetter interface {
	SetContext(ctx context.Context)
}

// ErrNoRequestContext means the runner library cannot carry a proof from one
// plugin to the next: it is not the patched copy this project builds with.
var ErrNoRequestContext = errors.New("identity: the runner library has no per-request context (build with third_party/apisix-go-plugin-runner)")

// Attach leaves p on r for the plugins after this one in the chain.
func Attach(r pkgHTTP.Request, p *Proof) error {
	s, ok := r.(contextSetter)
	if !ok {
		return ErrNoRequestContext
	}
	s.SetContext(context.WithValue(r.Context(), proofKey{}, p))
	return nil
}

// ProofOf returns the proof a plugin before this one attached to r, or nil.
// Only code in this process can attach one: no header a client sends can
// produce it.
func ProofOf(r pkgHTTP.Request) *Proof {
	p, _ := r.Context().Value(proofKey{}).(*Proof)
	return p
}
