package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// keySource holds the key set: a static one, or one fetched from the
// gateway's JWKS route.
type keySource struct {
	url     string
	client  *http.Client
	refresh time.Duration
	ttl     time.Duration
	now     func() time.Time
	log     *slog.Logger

	// fetching lets one fetch run at a time; the requests that wanted it
	// wait, then read what it brought instead of fetching again.
	fetching sync.Mutex

	mu        sync.Mutex // guards the fields below
	set       map[string]key
	fetchedAt time.Time
	lastTry   time.Time
	static    bool
}

func staticKeys(set map[string]key) *keySource {
	return &keySource{set: set, static: true}
}

func remoteKeys(url string, client *http.Client, refresh, ttl time.Duration, now func() time.Time, log *slog.Logger) *keySource {
	return &keySource{url: url, client: client, refresh: refresh, ttl: ttl, now: now, log: log}
}

var errTooSoon = errors.New("key set fetched moments ago")

func (s *keySource) current() (map[string]key, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set, s.fetchedAt
}

// lookup returns the key named kid, fetching the set when there is none yet,
// when it is older than the TTL, or when it lacks kid (a rotation), each at
// most once per refresh interval.
func (s *keySource) lookup(ctx context.Context, kid string) (key, error) {
	if s.static {
		if k, ok := s.set[kid]; ok {
			return k, nil
		}
		return key{}, refuse(ReasonUnknownKey, "unknown kid %q", kid)
	}
	set, fetchedAt := s.current()
	k, ok := set[kid]
	if ok && s.now().Sub(fetchedAt) < s.ttl {
		return k, nil
	}
	if err := s.fetch(ctx); err != nil && !errors.Is(err, errTooSoon) && set == nil {
		return key{}, &Error{Reason: ReasonKeysUnavailable, Err: err}
	}
	set, _ = s.current()
	if set == nil {
		return key{}, refuse(ReasonKeysUnavailable, "no key set yet: the last fetch of %s failed", s.url)
	}
	if fresh, found := set[kid]; found {
		return fresh, nil
	}
	if ok {
		// The refreshed set dropped the key: it was retired, so refuse.
		return key{}, refuse(ReasonUnknownKey, "unknown kid %q (no longer published)", kid)
	}
	return key{}, refuse(ReasonUnknownKey, "unknown kid %q", kid)
}

func (s *keySource) fetch(ctx context.Context) error {
	s.fetching.Lock()
	defer s.fetching.Unlock()
	s.mu.Lock()
	if !s.lastTry.IsZero() && s.now().Sub(s.lastTry) < s.refresh {
		s.mu.Unlock()
		return errTooSoon
	}
	s.lastTry = s.now()
	s.mu.Unlock()

	// The request that triggered the fetch may be cancelled; the set is for
	// every request, so the fetch runs to the client's own timeout.
	set, err := s.get(context.WithoutCancel(ctx))
	if err != nil {
		s.log.Warn("identity assertion key set fetch failed", "url", s.url, "error", err)
		return err
	}
	s.mu.Lock()
	s.set, s.fetchedAt = set, s.now()
	s.mu.Unlock()
	return nil
}

func (s *keySource) get(ctx context.Context) (map[string]key, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("verify: key set %s: %w", s.url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("verify: key set %s: %w", s.url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("verify: key set %s: status %d", s.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("verify: key set %s: %w", s.url, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("verify: key set %s: larger than %d bytes", s.url, maxJWKSBytes)
	}
	set, err := parseKeySet(body)
	if err != nil {
		return nil, fmt.Errorf("verify: key set %s: %w", s.url, err)
	}
	return set, nil
}
