package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/Nerzal/gocloak/v14"
)

// tokenCache holds the service-account token. One fetch runs at a time; other
// callers wait for it (a single flight).
type tokenCache struct {
	now func() time.Time

	mu        sync.Mutex
	token     string
	renewAt   time.Time // fetch a new token from here on
	expiresAt time.Time // the token is unusable from here on
	flight    *tokenFlight
}

type tokenFlight struct {
	done  chan struct{}
	token string
	err   error
}

// drop forgets tok if it is still the cached token (Keycloak refused it).
func (t *tokenCache) drop(tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token == tok {
		t.token, t.renewAt, t.expiresAt = "", time.Time{}, time.Time{}
	}
}

// renewMargin is how long before expiry a token is renewed: a fifth of its
// lifetime, at most 30 s.
func renewMargin(lifetime time.Duration) time.Duration {
	return min(lifetime/5, 30*time.Second)
}

// Token returns a service-account access token (client-credentials grant),
// cached and renewed before it expires. Concurrent callers share one fetch.
// If a renewal fails while the cached token is still valid, that token is returned.
func (c *Client) Token(ctx context.Context) (string, error) {
	tok, err := c.token.get(ctx, c)
	if err != nil {
		return "", fmt.Errorf("keycloak: service-account token: %w", err)
	}
	return tok, nil
}

func (t *tokenCache) get(ctx context.Context, c *Client) (string, error) {
	t.mu.Lock()
	now := t.now()
	if t.token != "" && now.Before(t.renewAt) {
		tok := t.token
		t.mu.Unlock()
		return tok, nil
	}
	f := t.flight
	if f == nil {
		f = &tokenFlight{done: make(chan struct{})}
		t.flight = f
		// The fetch outlives a caller that gives up, so the others still get the token.
		go c.fetchToken(context.WithoutCancel(ctx), f)
	}
	t.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		return "", fmt.Errorf("%s: %w", EndpointToken, ctx.Err())
	}
	if f.err == nil {
		return f.token, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && t.now().Before(t.expiresAt) {
		return t.token, nil
	}
	return "", f.err
}

func (c *Client) fetchToken(ctx context.Context, f *tokenFlight) {
	t := &c.token
	tok, lifetime, err := c.requestToken(ctx)
	t.mu.Lock()
	if err == nil {
		now := t.now()
		t.token = tok
		t.expiresAt = now.Add(lifetime)
		t.renewAt = now.Add(lifetime - renewMargin(lifetime))
		tokenRenewals.WithLabelValues("ok").Inc()
	} else {
		tokenRenewals.WithLabelValues("error").Inc()
	}
	t.flight = nil
	f.token, f.err = tok, err
	t.mu.Unlock()
	close(f.done)
}

// requestToken asks the token endpoint for a client-credentials token.
func (c *Client) requestToken(ctx context.Context) (string, time.Duration, error) {
	var jwt *gocloak.JWT
	var apiErr *gocloak.APIError
	err := c.guard(ctx, EndpointToken, func(ctx context.Context) (int, error) {
		var err error
		jwt, err = c.gc.LoginClient(ctx, c.opts.ClientID, c.opts.ClientSecret, c.opts.Realm)
		if err == nil {
			return http.StatusOK, nil
		}
		if errors.As(err, &apiErr) && apiErr.Code > 0 {
			return apiErr.Code, nil // Keycloak answered; judged below
		}
		return 0, err
	})
	switch {
	case err != nil:
		return "", 0, err
	case apiErr != nil:
		return "", 0, &StatusError{Endpoint: EndpointToken, Status: apiErr.Code, Message: apiErr.Message}
	case jwt == nil || jwt.AccessToken == "":
		return "", 0, errors.New("token: answer has no access_token")
	}
	lifetime := time.Duration(jwt.ExpiresIn) * time.Second
	if lifetime <= 0 {
		lifetime = time.Minute
	}
	return jwt.AccessToken, lifetime, nil
}
