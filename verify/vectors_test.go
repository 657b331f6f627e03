package verify_test

// The shared assertion vectors (testdata/assertions/manifest.json) are made
// here with the runner's own signer (internal/assertion: Claims, SignClaims,
// KeyRing) from the fixed keys in testdata/assertions/keys. Both verifiers
// (this package and clients/python) must accept and refuse exactly the ones
// the manifest says. TestVectorsMatchTheRunnersSigner fails when the signer
// and the committed vectors drift apart;
//
//	go test ./verify -run TestVectorsMatchTheRunnersSigner -update
//
// rewrites them. ES256 signatures are randomized, so a committed ES256
// vector is kept as long as its header and payload are what the signer
// makes today and its signature verifies with its key; EdDSA, HS256, RS256
// and "none" vectors are deterministic and compared byte for byte.

import (
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
)

var update = flag.Bool("update", false, "rewrite testdata/assertions/manifest.json from the runner's signer")

const (
	vectorDir      = "../testdata/assertions"
	vectorIssuer   = "apisix-identity-runner"
	vectorAudience = "demo-app"
	// vectorTokenIssuer is the realm the verifiers expect (token_iss).
	vectorTokenIssuer = "https://sso.example.org/realms/olapps"
	vectorLeeway      = 5
)

// t0 is the iat of most vectors; "now" is given per vector.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type manifest struct {
	Comment       string          `json:"comment"`
	Issuer        string          `json:"issuer"`
	Audience      string          `json:"audience"`
	TokenIssuer   string          `json:"token_issuer"`
	Header        string          `json:"header"`
	LeewaySeconds int             `json:"leeway_seconds"`
	JWKS          json.RawMessage `json:"jwks"`
	Vectors       []vector        `json:"vectors"`
}

type vector struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Token       string          `json:"token"`
	Now         int64           `json:"now"`
	JWKS        json.RawMessage `json:"jwks,omitempty"`
	// TokenIssuer, when set, replaces the manifest's token_issuer for this
	// vector; "" means the verifier expects none.
	TokenIssuer *string     `json:"token_issuer,omitempty"`
	Expect      expectation `json:"expect"`
}

type expectation struct {
	Accept   bool              `json:"accept"`
	Reason   string            `json:"reason,omitempty"`
	Identity *expectedIdentity `json:"identity,omitempty"`
}

// expectedIdentity is the language-neutral form of an accepted identity.
type expectedIdentity struct {
	Subject            string                 `json:"sub"`
	TokenIssuer        string                 `json:"token_iss"`
	Email              string                 `json:"email"`
	EmailVerified      bool                   `json:"email_verified"`
	Name               string                 `json:"name"`
	PreferredUsername  string                 `json:"preferred_username"`
	Groups             []string               `json:"groups"`
	Roles              []string               `json:"roles"`
	Organizations      map[string]expectedOrg `json:"organizations"`
	OrganizationSource string                 `json:"organization_source"`
	ID                 string                 `json:"jti"`
	IssuedAt           int64                  `json:"iat"`
	Expiry             int64                  `json:"exp"`
}

type expectedOrg struct {
	ID         string              `json:"id"`
	Attributes map[string][]string `json:"attributes"`
}

// testKeys are the committed private keys.
type testKeys struct {
	es256, previous, eddsa, unpublished, rsa crypto.Signer
}

func loadTestKeys(t *testing.T) testKeys {
	t.Helper()
	load := func(name string) crypto.Signer {
		data, err := os.ReadFile(filepath.Join(vectorDir, "keys", name))
		require.NoError(t, err)
		block, _ := pem.Decode(data)
		require.NotNil(t, block, name)
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		require.NoError(t, err, name)
		return k.(crypto.Signer)
	}
	return testKeys{
		es256: load("es256.pem"), previous: load("es256-previous.pem"), eddsa: load("eddsa.pem"),
		unpublished: load("unpublished.pem"), rsa: load("rsa.pem"),
	}
}

func ring(t *testing.T, key crypto.Signer, previous ...crypto.Signer) *assertion.KeyRing {
	t.Helper()
	r, err := assertion.NewKeyRing(key, previous...)
	require.NoError(t, err)
	return r
}

// baseClaims is Alice as orgsync hands her upstream.
func baseClaims(name string) assertion.Claims {
	return assertion.Claims{
		Issuer:             vectorIssuer,
		Audience:           vectorAudience,
		Subject:            "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f",
		TokenIssuer:        vectorTokenIssuer,
		IssuedAt:           t0,
		Expiry:             t0.Add(60 * time.Second),
		ID:                 "jti-" + name,
		Organization:       json.RawMessage(`{"acme":{"id":"0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01","tier":["gold"]}}`),
		OrganizationSource: "keycloak",
		Profile: map[string]json.RawMessage{
			"email":              json.RawMessage(`"alice@acme.example.com"`),
			"email_verified":     json.RawMessage(`true`),
			"name":               json.RawMessage(`"Alice Liddell"`),
			"preferred_username": json.RawMessage(`"alice"`),
			"groups":             json.RawMessage(`["/staff"]`),
			"roles":              json.RawMessage(`["learner"]`),
		},
	}
}

func baseIdentity(name string) *expectedIdentity {
	return &expectedIdentity{
		Subject:           "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f",
		TokenIssuer:       vectorTokenIssuer,
		Email:             "alice@acme.example.com",
		EmailVerified:     true,
		Name:              "Alice Liddell",
		PreferredUsername: "alice",
		Groups:            []string{"/staff"},
		Roles:             []string{"learner"},
		Organizations: map[string]expectedOrg{
			"acme": {ID: "0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01", Attributes: map[string][]string{"tier": {"gold"}}},
		},
		OrganizationSource: "keycloak",
		ID:                 "jti-" + name,
		IssuedAt:           t0.Unix(),
		Expiry:             t0.Add(60 * time.Second).Unix(),
	}
}

// generator builds the vectors, reusing a previous ES256 token when the
// signer would produce the same header and payload and its signature holds.
type generator struct {
	t        *testing.T
	keys     testKeys
	previous map[string]string
	out      []vector
	byName   map[string]string
}

func (g *generator) sign(name string, r *assertion.KeyRing, c assertion.Claims) string {
	g.t.Helper()
	fresh, err := r.SignClaims(&c)
	require.NoError(g.t, err, name)
	return g.keep(name, r, fresh)
}

func (g *generator) signRaw(name string, r *assertion.KeyRing, payload map[string]any) string {
	g.t.Helper()
	body, err := json.Marshal(payload)
	require.NoError(g.t, err)
	fresh, err := r.Sign(body)
	require.NoError(g.t, err, name)
	return g.keep(name, r, fresh)
}

func (g *generator) keep(name string, r *assertion.KeyRing, fresh string) string {
	g.t.Helper()
	old, ok := g.previous[name]
	if !ok || old == fresh {
		return fresh
	}
	o, f := strings.Split(old, "."), strings.Split(fresh, ".")
	if len(o) != 3 || o[0] != f[0] || o[1] != f[1] {
		return fresh
	}
	var set jose.JSONWebKeySet
	require.NoError(g.t, json.Unmarshal(r.JWKS(), &set))
	jws, err := jose.ParseSignedCompact(old, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(r.Algorithm())})
	if err != nil {
		return fresh
	}
	if _, err := jws.Verify(set.Key(r.KeyID())[0].Key); err != nil {
		return fresh
	}
	return old
}

func (g *generator) add(v vector) {
	g.out = append(g.out, v)
	g.byName[v.Name] = v.Token
}

func accept(id *expectedIdentity) expectation { return expectation{Accept: true, Identity: id} }
func refuse(reason string) expectation        { return expectation{Reason: reason} }

func b64(data []byte) string { return base64.RawURLEncoding.EncodeToString(data) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// withJWKS adds one more public key to a key set.
func withJWKS(t *testing.T, base []byte, extra jose.JSONWebKey) json.RawMessage {
	t.Helper()
	var set jose.JSONWebKeySet
	require.NoError(t, json.Unmarshal(base, &set))
	set.Keys = append(set.Keys, extra)
	return mustJSON(t, set)
}

func buildManifest(t *testing.T, previous map[string]string) manifest {
	keys := loadTestKeys(t)
	g := &generator{t: t, keys: keys, previous: previous, byName: map[string]string{}}
	es := ring(t, keys.es256)
	ed := ring(t, keys.eddsa)
	old := ring(t, keys.previous)
	published := ring(t, keys.es256, keys.eddsa) // what the gateway publishes
	now := t0.Add(10 * time.Second).Unix()

	g.add(vector{Name: "valid_es256", Description: "signed with the P-256 key (ES256), as orgsync hands Alice upstream",
		Token: g.sign("valid_es256", es, baseClaims("valid_es256")), Now: now, Expect: accept(baseIdentity("valid_es256"))})
	g.add(vector{Name: "valid_eddsa", Description: "signed with the Ed25519 key (EdDSA)",
		Token: g.sign("valid_eddsa", ed, baseClaims("valid_eddsa")), Now: now, Expect: accept(baseIdentity("valid_eddsa"))})

	exp := t0.Add(60 * time.Second).Unix()
	g.add(vector{Name: "expired", Description: "now is exp plus the leeway: refused",
		Token: g.sign("expired", es, baseClaims("expired")), Now: exp + vectorLeeway, Expect: refuse("expired")})
	g.add(vector{Name: "expired_within_leeway", Description: "now is one second short of exp plus the leeway: accepted",
		Token: g.sign("expired_within_leeway", es, baseClaims("expired_within_leeway")), Now: exp + vectorLeeway - 1,
		Expect: accept(baseIdentity("expired_within_leeway"))})

	future := baseClaims("not_yet_valid")
	future.IssuedAt, future.Expiry = t0.Add(100*time.Second), t0.Add(160*time.Second)
	g.add(vector{Name: "not_yet_valid", Description: "iat is more than the leeway after now (a clock far ahead, or a token made for later)",
		Token: g.sign("not_yet_valid", es, future), Now: t0.Add(100*time.Second).Unix() - vectorLeeway - 1, Expect: refuse("not_yet_valid")})
	skew := baseClaims("issued_within_leeway")
	skew.IssuedAt, skew.Expiry = future.IssuedAt, future.Expiry
	skewID := baseIdentity("issued_within_leeway")
	skewID.IssuedAt, skewID.Expiry = future.IssuedAt.Unix(), future.Expiry.Unix()
	g.add(vector{Name: "issued_within_leeway", Description: "iat is exactly the leeway after now (clock skew): accepted",
		Token: g.sign("issued_within_leeway", es, skew), Now: t0.Add(100*time.Second).Unix() - vectorLeeway, Expect: accept(skewID)})

	aud := baseClaims("wrong_audience")
	aud.Audience = "another-app"
	g.add(vector{Name: "wrong_audience", Description: "an assertion the gateway made for another app",
		Token: g.sign("wrong_audience", es, aud), Now: now, Expect: refuse("audience")})
	iss := baseClaims("wrong_issuer")
	iss.Issuer = "https://gateway.example.net"
	g.add(vector{Name: "wrong_issuer", Description: "iss is not the expected issuer",
		Token: g.sign("wrong_issuer", es, iss), Now: now, Expect: refuse("issuer")})

	// token_iss: the realm of the subject. A sub is unique only within its
	// realm, and iss is the gateway's whatever realm the route trusts.
	otherRealm := baseClaims("wrong_token_issuer")
	otherRealm.TokenIssuer = "https://sso.example.org/realms/another"
	g.add(vector{Name: "wrong_token_issuer", Description: "a user of another realm (token_iss), same gateway, same audience",
		Token: g.sign("wrong_token_issuer", es, otherRealm), Now: now, Expect: refuse("token_issuer")})
	unverified := baseClaims("no_token_issuer")
	unverified.TokenIssuer = ""
	g.add(vector{Name: "no_token_issuer", Description: "no token_iss (a route with verify_token false) while one is expected",
		Token: g.sign("no_token_issuer", es, unverified), Now: now, Expect: refuse("token_issuer")})
	unchecked := baseClaims("token_issuer_not_expected")
	unchecked.TokenIssuer = "https://sso.example.org/realms/another"
	uncheckedID := baseIdentity("token_issuer_not_expected")
	uncheckedID.TokenIssuer = unchecked.TokenIssuer
	none := ""
	g.add(vector{Name: "token_issuer_not_expected", Description: "the verifier expects no token issuer: any realm passes, and the identity says which",
		Token: g.sign("token_issuer_not_expected", es, unchecked), Now: now, TokenIssuer: &none, Expect: accept(uncheckedID)})
	unverifiedEmail := baseClaims("email_unverified")
	unverifiedEmail.Profile["email_verified"] = json.RawMessage(`false`)
	unverifiedEmailID := baseIdentity("email_unverified")
	unverifiedEmailID.EmailVerified = false
	g.add(vector{Name: "email_unverified", Description: "an email Keycloak has not verified (email_verified false)",
		Token: g.sign("email_unverified", es, unverifiedEmail), Now: now, Expect: accept(unverifiedEmailID)})

	g.add(vector{Name: "unknown_key", Description: "signed by a P-256 key the gateway does not publish",
		Token: g.sign("unknown_key", ring(t, keys.unpublished), baseClaims("unknown_key")), Now: now, Expect: refuse("unknown_key")})

	// Tampered: Alice's valid assertion with sub swapped for Mallory's, the
	// signature kept.
	valid := strings.Split(g.byName["valid_es256"], ".")
	forged := baseClaims("valid_es256")
	forged.Subject = "mallory"
	forgedBody, err := forged.Encode()
	require.NoError(t, err)
	g.add(vector{Name: "tampered_payload", Description: "valid_es256 with sub changed to mallory, signature kept",
		Token: valid[0] + "." + b64(forgedBody) + "." + valid[2], Now: now, Expect: refuse("signature")})
	orgForged := baseClaims("valid_es256")
	orgForged.Organization = json.RawMessage(`{"acme":{"id":"0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01","tier":["gold"]},"globex":{"id":"x"}}`)
	orgBody, err := orgForged.Encode()
	require.NoError(t, err)
	g.add(vector{Name: "tampered_organizations", Description: "valid_es256 with an organization added, signature kept",
		Token: valid[0] + "." + b64(orgBody) + "." + valid[2], Now: now, Expect: refuse("signature")})

	noneClaims := baseClaims("alg_none")
	body, err := noneClaims.Encode()
	require.NoError(t, err)
	noneHeader := mustJSON(t, map[string]string{"alg": "none", "kid": es.KeyID(), "typ": "JWT"})
	g.add(vector{Name: "alg_none", Description: `"alg":"none" with the kid of the published ES256 key and no signature`,
		Token: b64(noneHeader) + "." + b64(body) + ".", Now: now, Expect: refuse("algorithm")})

	// HS256 keyed with the public key, as published: the classic confusion
	// attack against verifiers that let the token choose the algorithm.
	spki, err := x509.MarshalPKIXPublicKey(keys.es256.Public())
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	hsClaims := baseClaims("hs256_public_key")
	body, err = hsClaims.Encode()
	require.NoError(t, err)
	hsHeader := mustJSON(t, map[string]string{"alg": "HS256", "kid": es.KeyID(), "typ": "JWT"})
	mac := hmac.New(sha256.New, pubPEM)
	mac.Write([]byte(b64(hsHeader) + "." + b64(body)))
	g.add(vector{Name: "hs256_public_key", Description: "HS256 whose secret is the published key's PEM, kid of that key",
		Token: b64(hsHeader) + "." + b64(body) + "." + b64(mac.Sum(nil)), Now: now, Expect: refuse("algorithm")})

	// RS256 by a key that is even in the set: RSA is not accepted at all.
	rsaKid := "rsa-test-key"
	rsaSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: keys.rsa, KeyID: rsaKid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	require.NoError(t, err)
	rsClaims := baseClaims("rs256")
	body, err = rsClaims.Encode()
	require.NoError(t, err)
	rsObj, err := rsaSigner.Sign(body)
	require.NoError(t, err)
	rsToken, err := rsObj.CompactSerialize()
	require.NoError(t, err)
	g.add(vector{Name: "rs256", Description: "RS256, with its RSA key published under its kid: RSA is not accepted",
		Token: rsToken, Now: now, Expect: refuse("algorithm"),
		JWKS: withJWKS(t, published.JWKS(), jose.JSONWebKey{Key: keys.rsa.Public(), KeyID: rsaKid, Algorithm: "RS256", Use: "sig"})})

	// ES256 in the header, the kid of the Ed25519 key.
	edParts := strings.Split(g.byName["valid_eddsa"], ".")
	var edHeader map[string]any
	raw, err := base64.RawURLEncoding.DecodeString(edParts[0])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &edHeader))
	edHeader["alg"] = "ES256"
	g.add(vector{Name: "alg_key_mismatch", Description: "valid_eddsa relabelled ES256: the header's algorithm does not fit the key its kid names",
		Token: b64(mustJSON(t, edHeader)) + "." + edParts[1] + "." + edParts[2], Now: now, Expect: refuse("algorithm")})

	rotated := ring(t, keys.es256, keys.previous)
	g.add(vector{Name: "rotated_previous_key", Description: "signed by the previous key before a rotation; the gateway publishes the new and the previous key",
		Token: g.sign("rotated_previous_key", old, baseClaims("rotated_previous_key")), Now: now, JWKS: rotated.JWKS(),
		Expect: accept(baseIdentity("rotated_previous_key"))})
	g.add(vector{Name: "rotated_new_key", Description: "signed by the new key during the rotation",
		Token: g.sign("rotated_new_key", rotated, baseClaims("rotated_new_key")), Now: now, JWKS: rotated.JWKS(),
		Expect: accept(baseIdentity("rotated_new_key"))})
	g.add(vector{Name: "rotated_key_retired", Description: "signed by the previous key after the rotation ended: it is no longer published",
		Token: g.sign("rotated_key_retired", old, baseClaims("rotated_key_retired")), Now: now, JWKS: es.JWKS(),
		Expect: refuse("unknown_key")})

	orgCase := func(name, description, claim, source string, orgs map[string]expectedOrg) {
		c := baseClaims(name)
		c.Organization = json.RawMessage(claim)
		c.OrganizationSource = source
		id := baseIdentity(name)
		id.Organizations = orgs
		id.OrganizationSource = source
		g.add(vector{Name: name, Description: description, Token: g.sign(name, es, c), Now: now, Expect: accept(id)})
	}
	orgCase("organizations_map_attributes", "two organizations, attributes with several values (Keycloak's map shape with attributes)",
		`{"acme":{"id":"0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01","tier":["gold"],"region":["eu","us"]},"globex":{"id":"a3c9e2b0-1f4d-4e6a-8b7c-2d9e0f1a3b5c","tier":["silver"]}}`,
		"cache", map[string]expectedOrg{
			"acme":   {ID: "0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01", Attributes: map[string][]string{"tier": {"gold"}, "region": {"eu", "us"}}},
			"globex": {ID: "a3c9e2b0-1f4d-4e6a-8b7c-2d9e0f1a3b5c", Attributes: map[string][]string{"tier": {"silver"}}},
		})
	orgCase("organizations_map_ids", "ids without attributes (Keycloak's map shape)",
		`{"acme":{"id":"0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01"},"globex":{"id":"a3c9e2b0-1f4d-4e6a-8b7c-2d9e0f1a3b5c"}}`,
		"stale", map[string]expectedOrg{
			"acme":   {ID: "0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01", Attributes: map[string][]string{}},
			"globex": {ID: "a3c9e2b0-1f4d-4e6a-8b7c-2d9e0f1a3b5c", Attributes: map[string][]string{}},
		})
	orgCase("organizations_map_without_ids", "aliases only, in the map shape (the token's claim was a list)",
		`{"acme":{},"globex":{}}`, "token", map[string]expectedOrg{
			"acme": {Attributes: map[string][]string{}}, "globex": {Attributes: map[string][]string{}},
		})
	orgCase("organizations_list", "Keycloak's default list shape", `["globex","acme"]`, "token", map[string]expectedOrg{
		"acme": {Attributes: map[string][]string{}}, "globex": {Attributes: map[string][]string{}},
	})
	orgCase("organizations_single", "a single alias (mapper with multivalued off)", `"acme"`, "token", map[string]expectedOrg{
		"acme": {Attributes: map[string][]string{}},
	})
	orgCase("organizations_none", "no organization: the signer writes {}", ``, "keycloak", map[string]expectedOrg{})

	intl := baseClaims("non_ascii")
	intl.Subject = "c2f0e7a4-9b1d-4c3e-8f5a-6d7b8c9e0a1b"
	intl.Organization = json.RawMessage(`{"société-générale":{"id":"e1d2c3b4-a5f6-4789-9abc-def012345678","ville":["Genève","Zürich"]},"東京大学":{"id":"f0e1d2c3-b4a5-4678-8abc-0123456789ab"}}`)
	intl.Profile = map[string]json.RawMessage{
		"email":              json.RawMessage(`"zoë@exämple.org"`),
		"name":               json.RawMessage(`"Zoë Ångström-Łukasiewicz 山田花子"`),
		"preferred_username": json.RawMessage(`"zoë"`),
		"groups":             json.RawMessage(`["/équipe"]`),
	}
	g.add(vector{Name: "non_ascii", Description: "names, email, group and organization aliases and attributes outside ASCII",
		Token: g.sign("non_ascii", ed, intl), Now: now, Expect: accept(&expectedIdentity{
			Subject: "c2f0e7a4-9b1d-4c3e-8f5a-6d7b8c9e0a1b", TokenIssuer: vectorTokenIssuer, Email: "zoë@exämple.org", Name: "Zoë Ångström-Łukasiewicz 山田花子",
			PreferredUsername: "zoë", Groups: []string{"/équipe"}, Roles: []string{},
			Organizations: map[string]expectedOrg{
				"société-générale": {ID: "e1d2c3b4-a5f6-4789-9abc-def012345678", Attributes: map[string][]string{"ville": {"Genève", "Zürich"}}},
				"東京大学":             {ID: "f0e1d2c3-b4a5-4678-8abc-0123456789ab", Attributes: map[string][]string{}},
			},
			OrganizationSource: "keycloak", ID: "jti-non_ascii", IssuedAt: t0.Unix(), Expiry: t0.Add(60 * time.Second).Unix(),
		})})

	// Payloads the runner's Claims.Encode would refuse to make, signed with
	// its key ring directly: the verifiers must not lean on the signer.
	rawBase := func(name string) map[string]any {
		return map[string]any{"iss": vectorIssuer, "aud": vectorAudience, "token_iss": vectorTokenIssuer, "iat": t0.Unix(), "exp": t0.Add(60 * time.Second).Unix(),
			"jti": "jti-" + name, "organization": map[string]any{}}
	}
	noSub := rawBase("no_subject")
	g.add(vector{Name: "no_subject", Description: "signed, but without sub", Token: g.signRaw("no_subject", es, noSub),
		Now: now, Expect: refuse("claims")})
	noExp := rawBase("no_expiry")
	noExp["sub"] = "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f"
	delete(noExp, "exp")
	g.add(vector{Name: "no_expiry", Description: "signed, but without exp: it would never expire", Token: g.signRaw("no_expiry", es, noExp),
		Now: now, Expect: refuse("claims")})
	audList := rawBase("audience_list")
	audList["sub"] = "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f"
	audList["aud"] = []string{"another-app", vectorAudience}
	g.add(vector{Name: "audience_list", Description: "aud as a list holding the expected audience (RFC 7519 4.1.3)",
		Token: g.signRaw("audience_list", es, audList), Now: now, Expect: accept(&expectedIdentity{
			Subject: "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f", TokenIssuer: vectorTokenIssuer, Groups: []string{}, Roles: []string{},
			Organizations: map[string]expectedOrg{}, ID: "jti-audience_list", IssuedAt: t0.Unix(), Expiry: t0.Add(60 * time.Second).Unix(),
		})})
	badOrg := rawBase("organizations_malformed")
	badOrg["sub"] = "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f"
	badOrg["organization"] = map[string]any{"acme": "not-an-object"}
	g.add(vector{Name: "organizations_malformed", Description: "an organization entry that is not an object",
		Token: g.signRaw("organizations_malformed", es, badOrg), Now: now, Expect: refuse("claims")})

	badRealm := rawBase("token_issuer_not_a_string")
	badRealm["sub"] = "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f"
	badRealm["token_iss"] = []string{vectorTokenIssuer}
	g.add(vector{Name: "token_issuer_not_a_string", Description: "token_iss as a list holding the expected realm",
		Token: g.signRaw("token_issuer_not_a_string", es, badRealm), Now: now, Expect: refuse("claims")})
	badVerified := rawBase("email_verified_not_a_boolean")
	badVerified["sub"] = "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f"
	badVerified["email"] = "alice@acme.example.com"
	badVerified["email_verified"] = "true"
	g.add(vector{Name: "email_verified_not_a_boolean", Description: `email_verified as the string "true"`,
		Token: g.signRaw("email_verified_not_a_boolean", es, badVerified), Now: now, Expect: refuse("claims")})

	g.add(vector{Name: "malformed_two_parts", Description: "not a compact JWS", Token: valid[0] + "." + valid[1], Now: now,
		Expect: refuse("malformed")})

	return manifest{
		Comment: "Generated by `go test ./verify -run TestVectorsMatchTheRunnersSigner -update` with the runner's signer " +
			"(internal/assertion) from the keys in keys/. Verify each token with its jwks (or the top-level one) at its now " +
			"(unix seconds), the issuer, audience, token_issuer (a vector's own token_issuer replaces it; \"\": none expected) " +
			"and leeway below; expect.reason is the refusal class.",
		Issuer: vectorIssuer, Audience: vectorAudience, TokenIssuer: vectorTokenIssuer, Header: "X-Identity-Assertion", LeewaySeconds: vectorLeeway,
		JWKS: published.JWKS(), Vectors: g.out,
	}
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	m, err := loadManifest()
	require.NoError(t, err, "run: go test ./verify -run TestVectorsMatchTheRunnersSigner -update")
	return m
}

func loadManifest() (manifest, error) {
	var m manifest
	data, err := os.ReadFile(filepath.Join(vectorDir, "manifest.json"))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(data, &m)
}

func encodeManifest(t *testing.T, m manifest) []byte {
	t.Helper()
	data, err := json.MarshalIndent(m, "", "  ")
	require.NoError(t, err)
	return append(data, '\n')
}

func TestVectorsMatchTheRunnersSigner(t *testing.T) {
	previous := map[string]string{}
	if data, err := os.ReadFile(filepath.Join(vectorDir, "manifest.json")); err == nil {
		var m manifest
		require.NoError(t, json.Unmarshal(data, &m))
		for _, v := range m.Vectors {
			previous[v.Name] = v.Token
		}
	}
	built := encodeManifest(t, buildManifest(t, previous))
	path := filepath.Join(vectorDir, "manifest.json")
	if *update {
		require.NoError(t, os.WriteFile(path, built, 0o644))
		return
	}
	committed, err := os.ReadFile(path)
	require.NoError(t, err)
	if string(built) == string(committed) {
		return
	}
	// Say which vectors drifted and in which part, rather than dumping both manifests.
	var want, got manifest
	require.NoError(t, json.Unmarshal(built, &want))
	require.NoError(t, json.Unmarshal(committed, &got))
	have := map[string]vector{}
	for _, v := range got.Vectors {
		have[v.Name] = v
	}
	for _, w := range want.Vectors {
		g, ok := have[w.Name]
		if !ok {
			t.Errorf("vector %s: missing from the committed manifest", w.Name)
			continue
		}
		wp, gp := strings.Split(w.Token, "."), strings.Split(g.Token, ".")
		for i, part := range []string{"header", "payload", "signature"} {
			if i < len(wp) && i < len(gp) && wp[i] != gp[i] {
				t.Errorf("vector %s: %s differs:\n signer today: %s\n committed:    %s", w.Name, part, decoded(wp[i]), decoded(gp[i]))
			}
		}
		if len(wp) != len(gp) {
			t.Errorf("vector %s: token differs", w.Name)
		}
	}
	t.Errorf("the runner's signer and testdata/assertions drifted apart (or the manifest's other fields did); if the " +
		"change is intended, run go test ./verify -run TestVectorsMatchTheRunnersSigner -update and commit the result")
}

// decoded shows a token segment as its JSON when it is one.
func decoded(segment string) string {
	if b, err := base64.RawURLEncoding.DecodeString(segment); err == nil && json.Valid(b) {
		return string(b)
	}
	return segment
}
