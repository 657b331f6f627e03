package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
)

// services are the process-wide clients the plugins share. Route configs come
// and go without any cleanup call from the runner, so clients live here, are
// built once, and closed on exit.
type services struct {
	cache *cache.Cache
	// revocations is the fleet's revocation store, on the cache's Redis;
	// both plugins and the watcher share it.
	revocations *cache.Revocations
	keycloak    *keycloak.Client
	watcher     *orgsync.Watcher
	metrics     *http.Server

	probe *keycloakProbe // Keycloak reachability for /readyz
	// tracer records what requests wait on; nil: tracing off.
	tracer trace.Tracer

	stopMetrics context.CancelFunc // ends the retries of a busy metrics address
	metricsDone chan struct{}      // closed when the metrics goroutine returns
}

func start(cfg *config, tracer trace.Tracer) (*services, error) {
	s := &services{tracer: tracer}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	// An unreachable Redis does not stop the runner: the cache runs on its
	// in-process tier and reconnects by itself. A malformed REDIS_URL does.
	s.cache, err = cache.New(ctx, &cache.Options{RedisURL: cfg.redisURL, ValueSecret: cfg.redisSecret, LocalSize: cfg.localEntries,
		LocalMaxBytes: cfg.localBytes, NoLocal: cfg.localEntries == 0, Tracer: tracer})
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	// Loads the fleet's live revocations before the first request (at
	// most its LoadTimeout); a Redis down now is loaded from later.
	s.revocations, err = cache.NewRevocations(s.cache, cache.RevocationOptions{})
	if err != nil {
		_ = s.cache.Close()
		return nil, fmt.Errorf("revocations: %w", err)
	}
	if cfg.keycloak.enabled() {
		k := cfg.keycloak
		s.keycloak, err = keycloak.New(&keycloak.Options{URL: k.url, Realm: k.realm, Issuer: k.issuer,
			ClientID: k.clientID, ClientSecret: k.clientSecret, Timeout: k.timeout, Tracer: tracer})
		if err != nil {
			_ = s.revocations.Close()
			_ = s.cache.Close()
			return nil, fmt.Errorf("KEYCLOAK_URL, KEYCLOAK_REALM, KEYCLOAK_ISSUER: %w", err)
		}
		if k.eventsInterval > 0 {
			s.watcher = orgsync.StartWatcher(&orgsync.Deps{Cache: s.cache, Keycloak: s.keycloak,
				Revocations: s.revocations}, k.eventsInterval)
		}
		go auditPrivileges(s.keycloak, k.eventsInterval > 0)
		s.probe = newKeycloakProbe(k.url, k.realm, k.timeout)
	}
	if cfg.metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.Handler())
		mux.HandleFunc("/healthz", s.health)
		mux.HandleFunc("/readyz", s.ready)
		if cfg.pprof {
			// All of net/http/pprof: Index also serves the named profiles
			// (heap, goroutine, allocs, block, mutex, threadcreate).
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		s.serveMetrics(cfg.metricsAddr, mux)
	}
	return s, nil
}

// metricsRetry is how often a busy metrics address is tried again.
const metricsRetry = 500 * time.Millisecond

// serveMetrics serves h on addr. A busy address never stops the runner: on
// `apisix reload` APISIX starts the new runner while the old one, which still
// holds the address, is being stopped (apisix/plugins/ext-plugin/init.lua
// spawns the runner from the new privileged agent; the old agent's
// exit_worker sends SIGTERM). Exiting would leave APISIX without a runner for
// the 3 s it waits before a respawn, and identity routes answer 503 meanwhile.
// So the protocol is served at once, and the listener is retried in the
// background until the old runner lets the address go; that is logged once.
func (s *services) serveMetrics(addr string, h http.Handler) {
	s.metrics = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopMetrics, s.metricsDone = cancel, make(chan struct{})
	ln, err := net.Listen("tcp", addr)
	go func() {
		defer close(s.metricsDone)
		if err != nil {
			slog.Warn("RUNNER_METRICS_ADDR is busy (another runner still holds it?): serving requests without "+
				"/metrics and /healthz, retrying in the background", "addr", addr, "error", err)
			for ln == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(metricsRetry):
				}
				ln, err = net.Listen("tcp", addr)
			}
			slog.Warn("metrics listener up", "addr", addr)
		}
		if err := s.metrics.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics listener stopped", "error", err)
		}
	}()
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

// release gives up what another runner of the fleet is waiting for, first
// thing on SIGTERM: the watcher's lease (its position is already in Redis),
// so another runner takes over at its next poll. It is bounded well inside
// the second APISIX waits before SIGKILL.
func (s *services) release() {
	if s.watcher != nil {
		s.watcher.Stop()
	}
}

// stop releases everything: the watcher's lease first, then the listeners
// and clients. The revocation store goes before the cache whose Redis and
// subscription it uses, and after the watcher, which revokes.
func (s *services) stop() {
	s.release()
	if s.metrics != nil {
		s.stopMetrics()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_ = s.metrics.Shutdown(ctx)
		cancel()
		<-s.metricsDone
	}
	if s.revocations != nil {
		_ = s.revocations.Close()
	}
	if s.cache != nil {
		_ = s.cache.Close()
	}
}
