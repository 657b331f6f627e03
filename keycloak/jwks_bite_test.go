package keycloak

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jwksServer publishes whatever key set the test sets.
type jwksServer struct {
	mu   sync.Mutex
	keys []jose.JSONWebKey
	url  string
}

func newJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: s.keys})
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func (s *jwksServer) publish(keys ...jose.JSONWebKey) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

func publicJWK(t *testing.T, kid, use string) jose.JSONWebKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return jose.JSONWebKey{Key: &key.PublicKey, KeyID: kid, Use: use, Algorithm: string(jose.RS256)}
}

// A key Keycloak stops publishing (retired after a rotation) is trusted no
// longer than MaxAge: the set is fetched again once it is that old, and the
// retired kid is then unknown. Without it, a leaked retired key would sign
// tokens the runner accepts until it restarts.
func TestRetiredKeyIsDroppedAfterMaxAge(t *testing.T) {
	old, current := publicJWK(t, "old", "sig"), publicJWK(t, "current", "sig")
	srv := newJWKSServer(t, old, current)
	const maxAge = 200 * time.Millisecond
	ks := NewKeySet(srv.url, &KeySetOptions{MaxAge: maxAge, MinRefreshInterval: time.Millisecond})

	_, err := ks.Key(t.Context(), "old")
	require.NoError(t, err)
	srv.publish(current)
	_, err = ks.Key(t.Context(), "old")
	require.NoError(t, err, "within MaxAge the fetched set is used as it is")

	time.Sleep(maxAge + 50*time.Millisecond)
	_, err = ks.Key(t.Context(), "old")
	assert.ErrorIs(t, err, errUnknownKey, "past MaxAge the retired key is gone")
	_, err = ks.Key(t.Context(), "current")
	assert.NoError(t, err)
}

// Keycloak publishes its encryption keys (use "enc") beside the signing
// keys; a token naming one must not verify with it.
func TestEncryptionKeysDoNotVerify(t *testing.T) {
	srv := newJWKSServer(t, publicJWK(t, "sig-1", "sig"), publicJWK(t, "enc-1", "enc"), publicJWK(t, "any-1", ""))
	ks := NewKeySet(srv.url, &KeySetOptions{MinRefreshInterval: time.Hour})

	_, err := ks.Key(t.Context(), "enc-1")
	assert.ErrorIs(t, err, errUnknownKey)
	_, err = ks.Key(t.Context(), "sig-1")
	assert.NoError(t, err)
	_, err = ks.Key(t.Context(), "any-1")
	assert.NoError(t, err, "a key without use may sign")

	// A set of encryption keys only is no key set at all.
	srv2 := newJWKSServer(t, publicJWK(t, "enc-2", "enc"))
	_, err = NewKeySet(srv2.url, nil).Key(t.Context(), "enc-2")
	assert.ErrorIs(t, err, ErrKeysUnavailable)
}
