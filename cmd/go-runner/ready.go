package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// readiness is /readyz's answer.
type readiness struct {
	Ready    bool           `json:"ready"`
	Redis    redisState     `json:"redis"`
	Keycloak *keycloakState `json:"keycloak,omitempty"`
}

type redisState struct {
	Configured bool `json:"configured"`
	Up         bool `json:"up"`
}

type keycloakState struct {
	Reachable bool   `json:"reachable"`
	Breaker   string `json:"breaker"` // closed, or open while calls are refused after failures
	Error     string `json:"error,omitempty"`
}

// ready answers 200 when every configured dependency answers: Redis (when
// REDIS_URL is set) and Keycloak (when KEYCLOAK_URL is set, with its circuit
// breaker closed); 503 otherwise, with the same JSON saying which one is not.
// The runner still serves while it is not ready (in-process cache, stale
// memberships): see docs/operations.md ("Metrics and health checks") before using it as a readiness probe.
func (s *services) ready(w http.ResponseWriter, r *http.Request) {
	var rd readiness
	if s.cache != nil {
		rd.Redis.Configured, rd.Redis.Up = s.cache.RedisState()
	}
	rd.Ready = !rd.Redis.Configured || rd.Redis.Up
	if s.keycloak != nil {
		k := &keycloakState{Breaker: "closed"}
		if !s.keycloak.Healthy() {
			k.Breaker = "open"
		}
		if err := s.probe.check(r.Context()); err != nil {
			k.Error = err.Error()
		} else {
			k.Reachable = true
		}
		rd.Keycloak = k
		rd.Ready = rd.Ready && k.Reachable && k.Breaker == "closed"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !rd.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rd)
}

// keycloakProbe asks Keycloak's public realm endpoint whether it answers.
// Results are kept a few seconds: probes of every pod must not become load.
type keycloakProbe struct {
	url    string
	client *http.Client

	mu      sync.Mutex
	checked time.Time
	err     error
}

const probeTTL = 5 * time.Second

func newKeycloakProbe(base, realm string, timeout time.Duration) *keycloakProbe {
	return &keycloakProbe{url: base + "/realms/" + url.PathEscape(realm), client: &http.Client{Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (p *keycloakProbe) check(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.checked) < probeTTL {
		return p.err
	}
	p.err = p.ask(ctx)
	p.checked = time.Now()
	return p.err
}

func (p *keycloakProbe) ask(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &probeStatus{code: resp.StatusCode}
	}
	return nil
}

type probeStatus struct{ code int }

func (e *probeStatus) Error() string {
	return "realm endpoint answered " + http.StatusText(e.code)
}
