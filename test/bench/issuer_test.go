package main

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// The hand-built tokens must be valid JWS with the claims Keycloak sets.
func TestMintIsAValidKeycloakShapedToken(t *testing.T) {
	is, err := startIssuer("https://sso.example.org/realms/olapps")
	if err != nil {
		t.Fatal(err)
	}
	defer is.close()
	id, err := is.mint("3f1c2d4e-0000-4000-8000-000000000001", "bench-1", "acme", "org-id", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(id.accessToken, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(is.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["sub"] != id.sub || claims["iss"] != is.url || claims["typ"] != "Bearer" || claims["azp"] != "apisix" {
		t.Fatalf("claims: %v", claims)
	}
	for _, h := range []string{id.userinfo, id.idToken} {
		b, err := base64.StdEncoding.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || m["sub"] != id.sub {
			t.Fatalf("%s: %v %v", b, m, err)
		}
	}
}
