package verify_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// An assertion whose aud is a list is for every app the list names, and for
// no other: a list without this app is refused like a string naming another.
func TestAudienceListWithoutTheAppIsRefused(t *testing.T) {
	keys, _ := newKeys(t)
	now := time.Now()
	v, err := verify.New(verify.Config{JWKS: keys.JWKS(), Issuer: "gw", Audience: "app", Now: func() time.Time { return now }})
	require.NoError(t, err)
	signWithAud := func(aud any) string {
		payload, err := json.Marshal(map[string]any{"iss": "gw", "aud": aud, "sub": "u-alice", "organization": map[string]any{},
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		require.NoError(t, err)
		tok, err := keys.Sign(payload)
		require.NoError(t, err)
		return tok
	}

	id, err := v.VerifyToken(t.Context(), signWithAud([]string{"other", "app"}))
	require.NoError(t, err, "a list naming the app")
	assert.Equal(t, "u-alice", id.Subject)

	for _, aud := range []any{[]string{"other", "app2"}, []string{}, []string{"APP"}} {
		_, err := v.VerifyToken(t.Context(), signWithAud(aud))
		assert.Equal(t, verify.ReasonAudience, reasonOf(t, err), "aud %v", aud)
	}
}

// signES256 signs payload under header by hand, so that the header can say
// what the runner's signer never writes.
func signES256(t *testing.T, key *ecdsa.PrivateKey, header, payload map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(payload)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	require.NoError(t, err)
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func assertionPayload(now time.Time) map[string]any {
	return map[string]any{"iss": "gw", "aud": "app", "sub": "u-alice", "organization": map[string]any{},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func reasonOf(t *testing.T, err error) verify.Reason {
	t.Helper()
	var verr *verify.Error
	require.True(t, errors.As(err, &verr), "want a refusal, got %v", err)
	return verr.Reason
}

// A header with crit or b64 asks the reader to change how it reads the
// token; the runner writes neither, so an assertion carrying one is refused,
// whatever it asks.
func TestCritAndB64HeadersAreRefused(t *testing.T) {
	keys, priv := newKeys(t)
	now := time.Now()
	v, err := verify.New(verify.Config{JWKS: keys.JWKS(), Issuer: "gw", Audience: "app", Now: func() time.Time { return now }})
	require.NoError(t, err)

	plain := signES256(t, priv, map[string]any{"alg": "ES256", "kid": keys.KeyID()}, assertionPayload(now))
	_, err = v.VerifyToken(t.Context(), plain)
	require.NoError(t, err, "the same assertion without them verifies")

	for name, header := range map[string]map[string]any{
		"crit":      {"alg": "ES256", "kid": keys.KeyID(), "crit": []string{"exp"}, "exp": now.Unix()},
		"b64 true":  {"alg": "ES256", "kid": keys.KeyID(), "b64": true},
		"b64 false": {"alg": "ES256", "kid": keys.KeyID(), "b64": false, "crit": []string{"b64"}},
	} {
		_, err := v.VerifyToken(t.Context(), signES256(t, priv, header, assertionPayload(now)))
		assert.Equal(t, verify.ReasonMalformed, reasonOf(t, err), name)
	}
}

// A key published for encryption (use "enc") is not a signing key, even
// when it is a P-256 key under a kid of its own.
func TestEncryptionKeyDoesNotVerify(t *testing.T) {
	_, sigKey := newKeys(t)
	_, encKey := newKeys(t)
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &sigKey.PublicKey, KeyID: "sig-1", Use: "sig", Algorithm: "ES256"},
		{Key: &encKey.PublicKey, KeyID: "enc-1", Use: "enc"},
	}})
	require.NoError(t, err)
	now := time.Now()
	v, err := verify.New(verify.Config{JWKS: set, Issuer: "gw", Audience: "app", Now: func() time.Time { return now }})
	require.NoError(t, err)

	_, err = v.VerifyToken(t.Context(), signES256(t, sigKey, map[string]any{"alg": "ES256", "kid": "sig-1"}, assertionPayload(now)))
	require.NoError(t, err)
	_, err = v.VerifyToken(t.Context(), signES256(t, encKey, map[string]any{"alg": "ES256", "kid": "enc-1"}, assertionPayload(now)))
	assert.Equal(t, verify.ReasonUnknownKey, reasonOf(t, err))
}
