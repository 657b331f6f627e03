// Package tokentest makes signing keys, a JWKS served from a local listener,
// and signed tokens, for tests of code that verifies tokens.
package tokentest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer is a token issuer with its own keys, serving its JWKS over HTTP the
// way Keycloak does at <issuer>/protocol/openid-connect/certs.
type Issuer struct {
	URL     string // the issuer (iss)
	JWKSURL string
	// Fetches counts JWKS requests served.
	Fetches atomic.Int64

	t      testing.TB
	server *httptest.Server
	mu     sync.Mutex
	keys   []*rsa.PrivateKey
	kids   []string
	down   bool
}

// NewIssuer starts an issuer with one RSA key.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{t: t}
	is.server = httptest.NewServer(http.HandlerFunc(is.serve))
	t.Cleanup(is.server.Close)
	is.URL = is.server.URL + "/realms/test"
	is.JWKSURL = is.URL + "/protocol/openid-connect/certs"
	is.Rotate()
	return is
}

func (is *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	is.Fetches.Add(1)
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.down || r.URL.Path != "/realms/test/protocol/openid-connect/certs" {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	var set jose.JSONWebKeySet
	for i, k := range is.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: is.kids[i], Algorithm: "RS256", Use: "sig"})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// Rotate adds a new key, which signs from now on; old keys stay published.
func (is *Issuer) Rotate() string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		is.t.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = append(is.keys, key)
	kid := "k" + time.Now().Format("150405.000000")
	is.kids = append(is.kids, kid)
	return kid
}

// SetDown makes the JWKS endpoint answer 503.
func (is *Issuer) SetDown(down bool) {
	is.mu.Lock()
	is.down = down
	is.mu.Unlock()
}

// Claims returns standard access-token claims for sub, valid for an hour.
func (is *Issuer) Claims(sub string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": is.URL, "sub": sub, "typ": "Bearer", "azp": "apisix",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// Sign signs claims with the newest key.
func (is *Issuer) Sign(claims map[string]any) string {
	is.mu.Lock()
	key, kid := is.keys[len(is.keys)-1], is.kids[len(is.kids)-1]
	is.mu.Unlock()
	return SignWith(is.t, key, kid, claims)
}

// SignType signs claims with the newest key and typ in the JWS header.
func (is *Issuer) SignType(typ string, claims map[string]any) string {
	is.mu.Lock()
	key, kid := is.keys[len(is.keys)-1], is.kids[len(is.kids)-1]
	is.mu.Unlock()
	return signTyped(is.t, key, kid, typ, claims)
}

// SignWith signs claims with any RSA key and kid (a key the issuer does not
// publish makes an "unknown key" token).
func SignWith(t testing.TB, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	return signTyped(t, key, kid, "JWT", claims)
}

func signTyped(t testing.TB, key *rsa.PrivateKey, kid, typ string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewKey makes an RSA key the issuer does not know.
func NewKey(t testing.TB) *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
