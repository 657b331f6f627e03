package verify_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// asExpected renders an accepted identity in the manifest's neutral form.
func asExpected(id verify.Identity) *expectedIdentity {
	out := &expectedIdentity{
		Subject: id.Subject, TokenIssuer: id.TokenIssuer, Email: id.Email, EmailVerified: id.EmailVerified, Name: id.Name, PreferredUsername: id.PreferredUsername,
		Groups: nonNil(id.Groups), Roles: nonNil(id.Roles), Organizations: map[string]expectedOrg{},
		OrganizationSource: id.OrganizationSource, ID: id.ID, IssuedAt: id.IssuedAt.Unix(), Expiry: id.Expiry.Unix(),
	}
	for _, o := range id.Organizations {
		attrs := o.Attributes
		if attrs == nil {
			attrs = map[string][]string{}
		}
		out.Organizations[o.Alias] = expectedOrg{ID: o.ID, Attributes: attrs}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func TestSharedVectors(t *testing.T) {
	m := readManifest(t)
	require.NotEmpty(t, m.Vectors)
	for _, vec := range m.Vectors {
		t.Run(vec.Name, func(t *testing.T) {
			jwks := vec.JWKS
			if len(jwks) == 0 {
				jwks = m.JWKS
			}
			tokenIssuer := m.TokenIssuer
			if vec.TokenIssuer != nil {
				tokenIssuer = *vec.TokenIssuer
			}
			v, err := verify.New(verify.Config{
				JWKS: jwks, Issuer: m.Issuer, Audience: m.Audience, TokenIssuer: tokenIssuer,
				Leeway: time.Duration(m.LeewaySeconds) * time.Second,
				Now:    func() time.Time { return time.Unix(vec.Now, 0) },
			})
			require.NoError(t, err)
			id, err := v.VerifyToken(context.Background(), vec.Token)
			if !vec.Expect.Accept {
				require.Error(t, err, vec.Description)
				assert.Equal(t, verify.Reason(vec.Expect.Reason), verify.ReasonOf(err), "%s: %v", vec.Description, err)
				return
			}
			require.NoError(t, err, vec.Description)
			want, _ := json.Marshal(vec.Expect.Identity)
			got, _ := json.Marshal(asExpected(id))
			assert.JSONEq(t, string(want), string(got))
		})
	}
}
