package orgsync

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A cache hit reads a value decoded before: the same value gives the same
// parsed snapshot without decoding JSON again; another value its own.
func TestSnapshotParsedOncePerValue(t *testing.T) {
	s := newSnapshots(1 << 20)
	a, err := s.parse([]byte(`{"account":"active","orgs":[{"id":"o1","alias":"acme"}]}`))
	require.NoError(t, err)
	again, err := s.parse([]byte(`{"account":"active","orgs":[{"id":"o1","alias":"acme"}]}`))
	require.NoError(t, err)
	assert.Same(t, a, again, "decoded again")
	hit := []byte(`{"account":"active","orgs":[{"id":"o1","alias":"acme"}]}`)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = s.parse(hit) }), "a hit allocates")

	other, err := s.parse([]byte(`{"account":"disabled","orgs":[]}`))
	require.NoError(t, err)
	assert.Equal(t, accountDisabled, other.Account)
	assert.Equal(t, accountActive, a.Account)

	_, err = s.parse([]byte(`{"account":`))
	assert.Error(t, err)
}
