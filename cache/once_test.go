package cache

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
)

// A name is claimed once in the fleet: by one of two processes, again only
// after its ttl or a release, and never while Redis cannot say.
func TestClaimOnce(t *testing.T) {
	srv := redistest.Start(t)
	o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t), OpTimeout: 200 * time.Millisecond}
	a, b := newTestCache(t, o), newTestCache(t, o)

	_, _, err := a.ClaimOnce(ctx, "n0", 0)
	assert.Error(t, err, "a claim needs a ttl")
	cl, first, err := a.ClaimOnce(ctx, "n1", 300*time.Millisecond)
	require.NoError(t, err)
	require.True(t, first)
	_, first, err = b.ClaimOnce(ctx, "n1", time.Minute)
	require.NoError(t, err)
	assert.False(t, first, "another process sees the claim")
	_, first, err = a.ClaimOnce(ctx, "n1", time.Minute)
	require.NoError(t, err)
	assert.False(t, first, "the same process too")
	assert.Equal(t, "apisix-identity:once:n1", (&Cache{opts: Options{KeyPrefix: "apisix-identity:"}}).onceKey("n1"))
	n, err := rawClient(t, srv.URL()).Exists(ctx, o.KeyPrefix+"once:n1").Result()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "kept under the key prefix")

	require.NoError(t, cl.Release(ctx))
	cl, first, err = b.ClaimOnce(ctx, "n1", 100*time.Millisecond)
	require.NoError(t, err)
	require.True(t, first, "free again after a release")
	time.Sleep(150 * time.Millisecond)
	_, first, err = a.ClaimOnce(ctx, "n1", time.Minute)
	require.NoError(t, err)
	assert.True(t, first, "free again after the ttl")
	assert.ErrorIs(t, cl.Release(ctx), ErrLockHeld, "an expired claim taken over is not released")

	srv.Kill()
	_, first, err = a.ClaimOnce(ctx, "n2", time.Minute)
	assert.Error(t, err, "Redis down: whether it was claimed cannot be known")
	assert.False(t, first)
}

func TestClaimOnceWithoutRedis(t *testing.T) {
	c := newTestCache(t, Options{})
	_, first, err := c.ClaimOnce(ctx, "n", time.Minute)
	assert.ErrorIs(t, err, ErrNoRedis)
	assert.False(t, first)
}
