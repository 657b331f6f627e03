package emit

import (
	"context"
	"errors"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
)

// Proof is what userinfo leaves on a request for the plugins after it: the
// identity it proved, a value no later plugin can change, and its route's
// emit settings, under which a later plugin emits again.
type Proof struct {
	Identity identity.Identity
	Route    *Route
	// At is the time userinfo read for this request (zero: none), so that
	// the plugins after it need not read the clock again.
	At time.Time
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
var ErrNoRequestContext = errors.New("emit: the runner library has no per-request context (build with third_party/apisix-go-plugin-runner)")

// Attach leaves p on r for the plugins after this one in the chain.
func Attach(r pkgHTTP.Request, p Proof) error {
	s, ok := r.(contextSetter)
	if !ok {
		return ErrNoRequestContext
	}
	s.SetContext(&proofContext{Context: r.Context(), proof: p})
	return nil
}

// proofContext is context.WithValue(ctx, proofKey{}, &proof) in one
// allocation instead of two (the context and the proof it points to): it
// is made on every request userinfo passes.
type proofContext struct {
	context.Context
	proof Proof
}

func (c *proofContext) Value(key any) any {
	if _, ok := key.(proofKey); ok {
		return &c.proof
	}
	return c.Context.Value(key)
}

// ProofOf returns the proof a plugin before this one attached to r; false
// when there is none. Only code in this process can attach one: no header a
// client sends can produce it.
func ProofOf(r pkgHTTP.Request) (Proof, bool) {
	p, ok := r.Context().Value(proofKey{}).(*Proof)
	if !ok || p == nil {
		return Proof{}, false
	}
	return *p, true
}
