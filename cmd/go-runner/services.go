package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
)

// services are the process-wide clients the plugins share. Route configs come
// and go without any cleanup call from the runner, so clients live here, are
// built once, and closed on exit.
type services struct {
	cache    *cache.Cache
	keycloak *keycloak.Client
	watcher  *orgsync.Watcher
	metrics  *http.Server
}

func start(cfg *config) (*services, error) {
	s := &services{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	// An unreachable Redis does not stop the runner: the cache runs on its
	// in-process tier and reconnects by itself. A malformed REDIS_URL does.
	s.cache, err = cache.New(ctx, &cache.Options{RedisURL: cfg.redisURL, LocalSize: cfg.localEntries,
		LocalMaxBytes: cfg.localBytes, NoLocal: cfg.localEntries == 0})
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if cfg.keycloak.enabled() {
		k := cfg.keycloak
		s.keycloak, err = keycloak.New(&keycloak.Options{URL: k.url, Realm: k.realm, ClientID: k.clientID,
			ClientSecret: k.clientSecret, Timeout: k.timeout})
		if err != nil {
			s.cache.Close()
			return nil, fmt.Errorf("KEYCLOAK_URL: %w", err)
		}
		orgsync.Configure(&orgsync.Deps{Cache: s.cache, Keycloak: s.keycloak})
		if k.eventsInterval > 0 {
			s.watcher = orgsync.StartWatcher(&orgsync.Deps{Cache: s.cache, Keycloak: s.keycloak}, k.eventsInterval)
		}
	}
	if cfg.metricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.metricsAddr)
		if err != nil {
			s.stop(0)
			return nil, fmt.Errorf("RUNNER_METRICS_ADDR: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.Handler())
		mux.HandleFunc("/healthz", s.health)
		if os.Getenv("RUNNER_PPROF") == "1" {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		}
		s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := s.metrics.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				slog.Error("metrics listener stopped", "error", err)
			}
		}()
	}
	return s, nil
}

// health answers 200 while the runner can do its job. Keycloak's breaker
// being open is reported but is not fatal: cached users are still served.
func (s *services) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	keycloakState := "not configured"
	if s.keycloak != nil {
		keycloakState = "ok"
		if !s.keycloak.Healthy() {
			keycloakState = "cooling off"
		}
	}
	fmt.Fprintf(w, `{"status":"ok","keycloak":%q}`+"\n", keycloakState)
}

// stopWatcher stops the admin-event watcher and releases its lease, so that
// another runner of the fleet takes over at its next tick. Safe to call twice.
func (s *services) stopWatcher() {
	if s.watcher != nil {
		s.watcher.Stop()
	}
}

// stop releases everything: the watcher's lease first, so another runner of
// the fleet takes over at once.
func (s *services) stop(grace time.Duration) {
	s.stopWatcher()
	if s.metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.metrics.Shutdown(ctx)
		cancel()
	}
	if s.cache != nil {
		_ = s.cache.Close()
	}
}
