package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// issuer signs Keycloak-shaped access tokens for identities that need no
// login: the working-set sweep's million synthetic users, and the bulk users
// of the fleet and cold scenarios (real Keycloak users, whose password logins
// would cost the shared Keycloak a password hash each). Its key is published
// on a local JWKS endpoint that the routes' userinfo config names as jwks_uri.
// Tokens are EdDSA, and the compact JWS is put together by hand from
// templates: minting a million RS256 tokens (Keycloak's default) through a
// JOSE library would cost the client more than the runner spends on them.
type issuer struct {
	url     string // iss: the test realm's issuer
	jwksURI string
	key     ed25519.PrivateKey
	header  string // base64url of the JWS protected header
	srv     *http.Server

	cookieOnce sync.Once
	cookie     string
}

// startIssuer mints tokens that name iss, the test Keycloak realm's issuer,
// and serves their key on a local JWKS endpoint: orgsync asks Keycloak only
// about tokens whose issuer is exactly that realm's.
func startIssuer(iss string) (*issuer, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	kid := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	hdr, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "JWT", "kid": kid})
	is := &issuer{url: iss, key: priv, header: base64.RawURLEncoding.EncodeToString(hdr),
		jwksURI: "http://" + ln.Addr().String() + "/certs"}
	mux := http.NewServeMux()
	mux.HandleFunc("/certs", func(w http.ResponseWriter, _ *http.Request) {
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
	claims      []byte // the access token's claims (JSON): X-Userinfo of a bearer-only route
	cookie      string // the lua-resty-session cookie of the browser's session
}

// mint builds a user's access token (the claims Keycloak 26 puts in one for
// APISIX's client, organization included), X-Userinfo and X-ID-Token. The
// values interpolated are UUIDs, user names and numbers the benchmark makes:
// nothing needs JSON escaping.
func (is *issuer) mint(sub, username, orgAlias, orgID string, ttl time.Duration) (*identity, error) {
	now := time.Now().Unix()
	exp := now + int64(ttl/time.Second)
	profile := `"email_verified":true,"organization":{"` + orgAlias + `":{"tier":["gold"],"id":"` + orgID + `"}},` +
		`"name":"Bench ` + username + `","preferred_username":"` + username + `","given_name":"Bench","family_name":"` +
		username + `","email":"` + username + `@example.org"`
	at := `{"exp":` + strconv.FormatInt(exp, 10) + `,"iat":` + strconv.FormatInt(now, 10) + `,"jti":"onrtro:` + randomHex(36) +
		`","iss":"` + is.url + `","aud":"account","sub":"` + sub + `","typ":"Bearer","azp":"apisix","sid":"` + randomHex(24) +
		`","acr":"1","allowed-origins":["http://127.0.0.1","http://localhost"],` +
		`"realm_access":{"roles":["default-roles-olapps","offline_access","uma_authorization"]},` +
		`"resource_access":{"account":{"roles":["manage-account","manage-account-links","view-profile"]}},` +
		`"scope":"openid email profile organization:*",` + profile + `}`
	input := is.header + "." + base64.RawURLEncoding.EncodeToString([]byte(at))
	tok := input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(is.key, []byte(input)))
	ui := `{"sub":"` + sub + `",` + profile + `}`
	id := `{"exp":` + strconv.FormatInt(exp, 10) + `,"iat":` + strconv.FormatInt(now, 10) + `,"auth_time":` +
		strconv.FormatInt(now, 10) + `,"jti":"` + randomHex(36) + `","iss":"` + is.url + `","aud":"apisix","sub":"` + sub +
		`","typ":"ID","azp":"apisix","sid":"` + randomHex(24) + `","at_hash":"` + randomHex(22) + `","acr":"1",` + profile + `}`
	out := &identity{sub: sub, accessToken: tok, userinfo: base64.StdEncoding.EncodeToString([]byte(ui)),
		idToken: base64.StdEncoding.EncodeToString([]byte(id)), claims: []byte(at)}
	// Sealing a session per minted user would put AES-GCM and deflate in the
	// sweep's client loop; the runner never opens the cookie, only carries
	// it, so every minted user shares one of the same make and size.
	is.cookieOnce.Do(func() {
		is.cookie = restySessionCookie(openidcSessionData(tok, []byte(id), []byte(ui), exp))
	})
	out.cookie = is.cookie
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	for i := range b {
		b[i] = byte(mrand.Uint32()) // ids that only need to differ (jti, sid), not to be secret
	}
	const digits = "0123456789abcdef"
	out := make([]byte, 0, len(b)*2)
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out[:n])
}

// sessionIdentity turns a real login into the headers openid-connect sets.
func sessionIdentity(s *session) *identity {
	idClaims := s.userinfo
	if parts := splitJWT(s.idToken); parts != nil {
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			idClaims = b
		}
	}
	var claims []byte
	if parts := splitJWT(s.accessToken); parts != nil {
		claims, _ = base64.RawURLEncoding.DecodeString(parts[1])
	}
	return &identity{sub: s.sub, accessToken: s.accessToken,
		userinfo: base64.StdEncoding.EncodeToString(s.userinfo),
		idToken:  base64.StdEncoding.EncodeToString(idClaims),
		claims:   claims,
		cookie: restySessionCookie(openidcSessionData(s.accessToken, idClaims, s.userinfo,
			s.expires.Unix()))}
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
