package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// issuer signs Keycloak-shaped access tokens for identities that need no
// login: the working-set sweep's million synthetic users, and the bulk users
// of the fleet and cold scenarios (real Keycloak users, whose password logins
// would cost the shared Keycloak a password hash each). Its key is published
// on a local JWKS endpoint that the routes' userinfo config names as jwks_uri.
// Tokens are EdDSA because minting a million RS256 tokens (Keycloak's
// default) would cost the client ~1 ms each.
type issuer struct {
	url     string // iss, and the base of jwks_uri
	jwksURI string
	signer  jose.Signer
	srv     *http.Server
}

func startIssuer() (*issuer, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	kid := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		return nil, err
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &issuer{url: "http://" + ln.Addr().String() + "/realms/bench", signer: signer}
	is.jwksURI = is.url + "/protocol/openid-connect/certs"
	mux := http.NewServeMux()
	mux.HandleFunc("/realms/bench/protocol/openid-connect/certs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set)
	})
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = is.srv.Serve(ln) }()
	return is, nil
}

func (is *issuer) close() { _ = is.srv.Close() }

// identity is one user's headers as openid-connect would set them.
type identity struct {
	sub         string
	accessToken string
	userinfo    string // X-Userinfo: base64 JSON
	idToken     string // X-ID-Token: base64 JSON of the ID token's claims
}

// mint builds a user's access token (the claims Keycloak 26 puts in one for
// APISIX's client, organization included), X-Userinfo and X-ID-Token.
func (is *issuer) mint(sub, username, orgAlias, orgID string, ttl time.Duration) (*identity, error) {
	now := time.Now()
	orgs := map[string]any{orgAlias: map[string]any{"id": orgID, "tier": []string{"gold"}}}
	profile := map[string]any{"sub": sub, "email_verified": true, "organization": orgs, "name": "Bench " + username,
		"preferred_username": username, "given_name": "Bench", "family_name": username,
		"email": username + "@example.org"}
	at := map[string]any{"exp": now.Add(ttl).Unix(), "iat": now.Unix(), "jti": "onrtro:" + randomHex(16),
		"iss": is.url, "aud": "account", "typ": "Bearer", "azp": "apisix", "sid": randomHex(12), "acr": "1",
		"allowed-origins": []string{"http://127.0.0.1", "http://localhost"},
		"realm_access":    map[string]any{"roles": []string{"default-roles-olapps", "offline_access", "uma_authorization"}},
		"resource_access": map[string]any{"account": map[string]any{"roles": []string{"manage-account", "manage-account-links", "view-profile"}}},
		"scope":           "openid email profile organization:*",
	}
	for k, v := range profile {
		at[k] = v
	}
	payload, _ := json.Marshal(at)
	jws, err := is.signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("mint token: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return nil, err
	}
	ui, _ := json.Marshal(profile)
	id := map[string]any{"exp": now.Add(ttl).Unix(), "iat": now.Unix(), "auth_time": now.Unix(), "jti": randomHex(16),
		"iss": is.url, "aud": "apisix", "sub": sub, "typ": "ID", "azp": "apisix", "sid": randomHex(12), "at_hash": randomHex(11),
		"acr": "1", "email_verified": true, "name": "Bench " + username, "preferred_username": username, "email": username + "@example.org"}
	idj, _ := json.Marshal(id)
	return &identity{sub: sub, accessToken: tok, userinfo: base64.StdEncoding.EncodeToString(ui),
		idToken: base64.StdEncoding.EncodeToString(idj)}, nil
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	const digits = "0123456789abcdef"
	out := make([]byte, 0, len(b)*2)
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out[:n])
}

// apisixHeaders are the 14 headers APISIX hands the runner in
// ext-plugin-post-req after openid-connect: the client's own, the proxy ones,
// and the three openid-connect sets. The cookie is a ~300-byte
// lua-resty-session cookie.
func apisixHeaders(id *identity) []header {
	return []header{
		{"host", "mitxonline.example.org"},
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
		{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"},
		{"accept-language", "en-US,en;q=0.9"},
		{"accept-encoding", "gzip, deflate, br, zstd"},
		{"cookie", "session=" + sessionCookie + "; csrftoken=Zq3xM1k9pPq0s8WbZ4dM0yQfV2nL7tRc"},
		{"x-forwarded-for", "198.51.100.23"},
		{"x-forwarded-proto", "https"},
		{"x-forwarded-host", "mitxonline.example.org"},
		{"x-forwarded-port", "443"},
		{"x-real-ip", "198.51.100.23"},
		{"x-userinfo", id.userinfo},
		{"x-access-token", id.accessToken},
		{"x-id-token", id.idToken},
	}
}

// sessionCookie is shaped like lua-resty-session 4's cookie (base64url header,
// encrypted payload and tag): only its size matters here.
var sessionCookie = func() string {
	b := make([]byte, 200)
	for i := range b {
		b[i] = byte(i*131 + 7)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}()

// sessionIdentity turns a real login into the headers openid-connect sets.
func sessionIdentity(s *session) *identity {
	idClaims := s.userinfo
	if parts := splitJWT(s.idToken); parts != nil {
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			idClaims = b
		}
	}
	return &identity{sub: s.sub, accessToken: s.accessToken,
		userinfo: base64.StdEncoding.EncodeToString(s.userinfo),
		idToken:  base64.StdEncoding.EncodeToString(idClaims)}
}

func splitJWT(t string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(t); i++ {
		if t[i] == '.' {
			parts = append(parts, t[start:i])
			start = i + 1
		}
	}
	parts = append(parts, t[start:])
	if len(parts) != 3 {
		return nil
	}
	return parts
}
