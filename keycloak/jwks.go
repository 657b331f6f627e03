package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tracing"
)

// KeySetOptions tune a KeySet.
type KeySetOptions struct {
	// HTTPClient fetches the key set. Default: a client with a 5s timeout.
	HTTPClient *http.Client
	// MinRefreshInterval bounds how often an unknown kid makes us fetch the
	// key set again, so tokens with made-up kids cannot hammer Keycloak.
	// Default 10s.
	MinRefreshInterval time.Duration
	// MaxAge: a key set older than this is fetched again on next use, which
	// picks up rotated keys before the old one is removed. Default 1h.
	MaxAge time.Duration
	// Tracer records a traced request's wait for a fetch of the key set as a span "keycloak jwks".
	// Default nil: no spans.
	Tracer trace.Tracer
}

func (o *KeySetOptions) init() {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if o.MinRefreshInterval <= 0 {
		o.MinRefreshInterval = 10 * time.Second
	}
	if o.MaxAge <= 0 {
		o.MaxAge = time.Hour
	}
}

// KeySet is a JWKS fetched from a URL, cached, and refreshed when a token
// names a key it does not hold, at a bounded rate.
type KeySet struct {
	url  string
	opts KeySetOptions

	mu          sync.Mutex
	keys        map[string]jose.JSONWebKey
	fetchedAt   time.Time
	lastAttempt time.Time
	lastErr     error
	inflight    chan struct{}
}

// NewKeySet returns a key set read lazily from url.
func NewKeySet(url string, opts *KeySetOptions) *KeySet {
	var o KeySetOptions
	if opts != nil {
		o = *opts
	}
	o.init()
	return &KeySet{url: url, opts: o}
}

// URL is where the key set is fetched.
func (ks *KeySet) URL() string { return ks.url }

// ErrKeysUnavailable: the key set could not be fetched.
var ErrKeysUnavailable = errors.New("signing keys unavailable")

// errUnknownKey: the key set holds no key with that kid, even after a refresh.
var errUnknownKey = errors.New("unknown signing key")

// Key returns the key with kid ("" matches a set of one key).
func (ks *KeySet) Key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	for attempt := 0; ; attempt++ {
		ks.mu.Lock()
		key, found := ks.lookupLocked(kid)
		now := time.Now()
		stale := ks.keys == nil || now.Sub(ks.fetchedAt) > ks.opts.MaxAge
		canRefresh := now.Sub(ks.lastAttempt) >= ks.opts.MinRefreshInterval || ks.keys == nil && ks.lastErr == nil
		if found && !stale {
			ks.mu.Unlock()
			return key, nil
		}
		if attempt > 0 || !canRefresh && ks.inflight == nil {
			err := ks.lastErr
			ks.mu.Unlock()
			if found {
				return key, nil
			}
			if ks.keys == nil && err != nil {
				return jose.JSONWebKey{}, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
			}
			return jose.JSONWebKey{}, errUnknownKey
		}
		wait := ks.inflight
		started := wait == nil
		if started {
			wait = make(chan struct{})
			ks.inflight = wait
			ks.lastAttempt = now
			go ks.refresh(wait)
		}
		ks.mu.Unlock()
		// The fetch runs detached (refresh); the span is this caller's wait for it.
		_, span := tracing.Start(ctx, ks.opts.Tracer, "keycloak jwks")
		if span.IsRecording() {
			span.SetAttributes(attribute.Bool("jwks.fetch_started", started))
		}
		select {
		case <-wait:
			var err error
			if span.IsRecording() {
				ks.mu.Lock()
				err = ks.lastErr
				ks.mu.Unlock()
			}
			tracing.End(span, err, "key set unavailable")
		case <-ctx.Done():
			tracing.End(span, ctx.Err(), "gave up waiting")
			if found {
				return key, nil
			}
			return jose.JSONWebKey{}, fmt.Errorf("%w: %v", ErrKeysUnavailable, ctx.Err())
		}
	}
}

func (ks *KeySet) lookupLocked(kid string) (jose.JSONWebKey, bool) {
	if kid == "" && len(ks.keys) == 1 {
		for _, k := range ks.keys {
			return k, true
		}
	}
	k, ok := ks.keys[kid]
	return k, ok
}

// refresh runs detached from the request that triggered it, so one caller
// giving up does not waste the fetch for the others.
func (ks *KeySet) refresh(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), ks.opts.HTTPClient.Timeout+time.Second)
	defer cancel()
	keys, err := ks.fetch(ctx)
	ks.mu.Lock()
	if err == nil {
		ks.keys = keys
		ks.fetchedAt = time.Now()
	}
	if (err == nil) != (ks.lastErr == nil) {
		if err != nil {
			logger().Warn("JWKS fetch failed", "url", ks.url, "error", err)
		} else {
			logger().Info("JWKS fetch recovered", "url", ks.url)
		}
	}
	ks.lastErr = err
	ks.inflight = nil
	ks.mu.Unlock()
	close(done)
}

func (ks *KeySet) fetch(ctx context.Context) (map[string]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS %s: status %d", ks.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", ks.url, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", ks.url, err)
	}
	keys := make(map[string]jose.JSONWebKey, len(set.Keys))
	for _, k := range set.Keys {
		// Keycloak publishes encryption keys (use "enc") in the same set.
		if k.Use == "enc" || !k.IsPublic() {
			continue
		}
		keys[k.KeyID] = k
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS %s: no signing keys", ks.url)
	}
	return keys, nil
}
