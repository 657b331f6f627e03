package userinfo

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSessionKeyCollisionNeverSharesAnIdentity: the key hashes the headers'
// tails only, so headers that differ before their last keyTail bytes share
// a key; get must still tell them apart by their bytes.
func TestSessionKeyCollisionNeverSharesAnIdentity(t *testing.T) {
	s := newSessions(1 << 20)
	token := []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9." + strings.Repeat("s", 342))
	alice := []byte("eyJzdWIiOiJhbGljZSJ9" + strings.Repeat("A", 100))
	mallory := []byte("eyJzdWIiOiJtYWxsb3J5" + strings.Repeat("A", 100))
	require.Equal(t, len(alice), len(mallory))
	kAlice := s.key(nil, "apisix", alice, token, nil)
	kMallory := s.key(nil, "apisix", mallory, token, nil)
	require.Equal(t, kAlice, kMallory, "the test needs headers whose keys collide")

	now := time.Now()
	s.put(kAlice, &session{userinfo: string(alice), token: string(token), expires: now.Add(time.Hour)})
	assert.NotNil(t, s.get(kAlice, alice, token, nil, now))
	assert.Nil(t, s.get(kMallory, mallory, token, nil, now), "another X-Userinfo under a colliding key got alice's session")
	assert.Nil(t, s.get(kAlice, alice, token, []byte("id"), now), "another X-Raw-ID-Token got the session")

	// Distinct tokens (distinct signatures) get distinct keys.
	other := []byte(string(token[:len(token)-1]) + "t")
	assert.NotEqual(t, kAlice, s.key(nil, "apisix", alice, other, nil))
	assert.NotEqual(t, kAlice, s.key(nil, "apisix", alice, token[:len(token)-1], nil), "lengths are part of the key")
}
