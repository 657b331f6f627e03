package assertion

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lifetime is exp - iat of a signed assertion.
func lifetime(t *testing.T, jws string) time.Duration {
	t.Helper()
	parts := strings.Split(jws, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var c struct {
		Iat int64 `json:"iat"`
		Exp int64 `json:"exp"`
	}
	require.NoError(t, json.Unmarshal(payload, &c))
	return time.Duration(c.Exp-c.Iat) * time.Second
}

// Two routes signing the same identity with different ttls get assertions
// of their own ttl: a route that promises its app 30 s assertions never
// hands out one signed for another route's hour.
func TestReuserKeepsTTLsApart(t *testing.T) {
	keys, err := Generate()
	require.NoError(t, err)
	r := NewReuser(0)

	long, fresh, _, err := r.Sign(keys, claimsFor("u1"), time.Hour)
	require.NoError(t, err)
	require.True(t, fresh)
	assert.Equal(t, time.Hour, lifetime(t, long))

	short, fresh, reuseUntil, err := r.Sign(keys, claimsFor("u1"), 30*time.Second)
	require.NoError(t, err)
	assert.True(t, fresh, "another ttl signs anew")
	assert.Equal(t, 30*time.Second, lifetime(t, short))
	assert.WithinDuration(t, time.Now().Add(15*time.Second), reuseUntil, 2*time.Second)

	again, fresh, _, err := r.Sign(keys, claimsFor("u1"), time.Hour)
	require.NoError(t, err)
	assert.False(t, fresh)
	assert.Equal(t, long, again, "each ttl keeps its own reusable assertion")
}
