// Package assertion signs the identity assertion userinfo passes upstream and
// publishes the public keys that verify it.
package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	jose "github.com/go-jose/go-jose/v4"
)

// KeyRing holds the signing key and the keys still published for rotation.
type KeyRing struct {
	signer jose.Signer
	key    crypto.Signer // signs the change feed's entries too (feed.go)
	kid    string
	alg    jose.SignatureAlgorithm
	jwks   []byte
	// Ephemeral is true when the key was made at start: assertions then do not
	// verify across restarts or across gateway nodes.
	Ephemeral bool
}

// LoadFile reads PEM private keys (PKCS#8, or SEC 1 "EC PRIVATE KEY"): the
// first signs, the others are previous keys still published in the JWKS so
// that assertions signed before a rotation keep verifying until they expire.
// P-256 keys sign ES256, Ed25519 keys sign EdDSA.
func LoadFile(path string) (*KeyRing, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("assertion: signing key file: %w", err)
	}
	var keys []crypto.Signer
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		key, err := parsePrivateKey(block)
		if err != nil {
			return nil, fmt.Errorf("assertion: signing key file %s, key %d: %w", path, len(keys)+1, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("assertion: signing key file %s holds no PEM private key", path)
	}
	return NewKeyRing(keys[0], keys[1:]...)
}

// Generate makes an ephemeral P-256 key.
func Generate() (*KeyRing, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("assertion: generating key: %w", err)
	}
	ring, err := NewKeyRing(key)
	if err != nil {
		return nil, err
	}
	ring.Ephemeral = true
	return ring, nil
}

func parsePrivateKey(block *pem.Block) (crypto.Signer, error) {
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", k)
		}
		return signer, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("unsupported PEM block %q (want PRIVATE KEY or EC PRIVATE KEY)", block.Type)
}

func algorithmFor(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("EC keys must be P-256 (ES256)")
		}
		return jose.ES256, nil
	case ed25519.PrivateKey:
		return jose.EdDSA, nil
	}
	return "", fmt.Errorf("unsupported key type %T (want P-256 or Ed25519)", key)
}

// NewKeyRing signs with key and publishes key and previous.
func NewKeyRing(key crypto.Signer, previous ...crypto.Signer) (*KeyRing, error) {
	alg, err := algorithmFor(key)
	if err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	var set jose.JSONWebKeySet
	var kid string
	for i, k := range append([]crypto.Signer{key}, previous...) {
		a, err := algorithmFor(k)
		if err != nil {
			return nil, fmt.Errorf("assertion: previous key %d: %w", i, err)
		}
		pub := jose.JSONWebKey{Key: k.Public(), Algorithm: string(a), Use: "sig"}
		thumb, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("assertion: key id: %w", err)
		}
		// The RFC 7638 thumbprint as kid is the same on every node that loads
		// the same key file, with nothing to configure.
		pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
		if i == 0 {
			kid = pub.KeyID
		}
		set.Keys = append(set.Keys, pub)
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("assertion: encoding JWKS: %w", err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("assertion: signer: %w", err)
	}
	return &KeyRing{signer: signer, key: key, kid: kid, alg: alg, jwks: jwks}, nil
}

// KeyID is the kid of the signing key.
func (k *KeyRing) KeyID() string { return k.kid }

// Algorithm is the JWS algorithm of the signing key.
func (k *KeyRing) Algorithm() string { return string(k.alg) }

// JWKS returns the public key set as JSON.
func (k *KeyRing) JWKS() []byte { return k.jwks }

// Sign returns a compact JWS of the JSON payload.
func (k *KeyRing) Sign(payload []byte) (string, error) {
	obj, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("assertion: signing: %w", err)
	}
	return obj.CompactSerialize()
}
