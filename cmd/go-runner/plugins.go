package main

import (
	"fmt"

	"github.com/apache/apisix-go-plugin-runner/pkg/plugin"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/inflight"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/userinfo"
)

// registerPlugins builds both plugins with the process's clients (and the
// counter of calls under way, which main waits on at SIGTERM) and hands
// them to the runner library, before runner.Run: nothing is read from
// package globals, so tests build the same plugins with fakes.
func registerPlugins(s *services, keys *assertion.KeyRing, calls *inflight.Counter) error {
	// One emitter for both plugins: userinfo emits the token's view, orgsync emits again with
	// Keycloak's, and what either rendered is reused by the other's next request of the login.
	emitter := emit.New(emit.Options{Keys: keys})
	// The back-channel logout route remembers a logout token's jti for the fleet through the cache.
	verifiers := keycloak.NewVerifiers(0)
	verifiers.Tracer = s.tracer
	uideps := userinfo.Deps{Verifiers: verifiers, Emitter: emitter, Cache: s.cache, Calls: calls, Tracer: s.tracer}
	// The change feed is signed with the assertion's key: apps verify it with the key set they
	// already trust.
	deps := orgsync.Deps{Feed: keys, Emitter: emitter, Calls: calls, Tracer: s.tracer}
	if s.revocations != nil {
		uideps.Revocations, deps.Revocations = s.revocations, s.revocations
	}
	ui := userinfo.New(uideps)
	// An interface holding a nil pointer is not nil: set only what exists,
	// so that orgsync sees "no Keycloak" and answers 500.
	if s.cache != nil {
		deps.Cache = s.cache
	}
	if s.keycloak != nil {
		deps.Keycloak = s.keycloak
	}
	for _, p := range []plugin.Plugin{ui, orgsync.New(deps)} {
		if err := plugin.RegisterPlugin(p); err != nil {
			return fmt.Errorf("registering plugin %s: %w", p.Name(), err)
		}
	}
	return nil
}
