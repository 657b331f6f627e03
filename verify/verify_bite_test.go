package verify_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

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
		var verr *verify.Error
		require.True(t, errors.As(err, &verr), "aud %v: want a refusal, got %v", aud, err)
		assert.Equal(t, verify.ReasonAudience, verr.Reason, "aud %v", aud)
	}
}
