package verify_test

import (
	"context"
	"testing"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// FuzzVerifyToken: whatever arrives in the header, Verify answers with an
// identity or a classified refusal, never a panic, and accepts no token but
// those the shared vectors' keys signed.
func FuzzVerifyToken(f *testing.F) {
	m, err := loadManifest()
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range m.Vectors {
		f.Add(v.Token)
	}
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.")
	f.Add("eyJhbGciOiJFUzI1NiIsImtpZCI6IngiLCJjcml0IjpbImV4cCJdfQ.e30.AA")
	v, err := verify.New(verify.Config{JWKS: m.JWKS, Issuer: m.Issuer, Audience: m.Audience,
		Now: func() time.Time { return time.Unix(m.Vectors[0].Now, 0) }})
	if err != nil {
		f.Fatal(err)
	}
	// Tokens the test keys signed; at the fuzz clock some refused vectors
	// (expired, not yet valid) are valid.
	signed := map[string]bool{}
	for _, vec := range m.Vectors {
		signed[vec.Token] = true
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.VerifyToken(context.Background(), token)
		if err != nil {
			if verify.ReasonOf(err) == "" {
				t.Fatalf("unclassified refusal: %v", err)
			}
			return
		}
		if id.Subject == "" {
			t.Fatal("accepted an identity without a subject")
		}
		if !signed[token] {
			// Nothing but a token the keys signed can verify: the header
			// is decoded strictly, so not even a re-encoding of one.
			t.Fatalf("accepted a token that no vector holds: %q", token)
		}
	})
}
