package orgsync

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// Each change orgsync records is signed with the key it is given (main: the assertion's), bound
// to the stream, so an app verifies it with the key set it already trusts.
func TestChangeFeedEntriesAreSigned(t *testing.T) {
	h := newHarness(t)
	keys, err := assertion.Generate()
	require.NoError(t, err)
	h.plugin.deps.Feed = keys
	h.dir.addUser("u-alice", true, acme, globex)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h"}`)
	_, _ = h.do(conf, login("u-alice", "acme"), nil)

	entries, err := h.store.ReadFeed(t.Context(), FeedStream, 10)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.NotEmpty(t, entries[0].Fields[FeedSigField])
	v, err := verify.New(verify.Config{JWKS: keys.JWKS(), Issuer: "apisix-identity-runner", Audience: "app"})
	require.NoError(t, err)
	c, err := v.VerifyFeedEntry(t.Context(), h.store.FeedKey(FeedStream), entries[0].ID, entries[0].Fields)
	require.NoError(t, err)
	assert.Equal(t, "u-alice", c.User)
	assert.Equal(t, []string{"globex"}, c.Added)

	_, err = v.VerifyFeedEntry(t.Context(), "another:feed:"+FeedStream, entries[0].ID, entries[0].Fields)
	assert.Error(t, err, "bound to its stream")
}
