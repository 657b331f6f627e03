package cache

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exported reports whether the default registry exports the metric, and its value.
func exported(t *testing.T, name string) (float64, bool) {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			require.Len(t, f.GetMetric(), 1)
			return f.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// A runner without REDIS_URL has no Redis to be down: redis_up is not exported there (an alert on
// redis_up == 0 would page for every runner in the in-process mode), and it is from the first cache
// with a REDIS_URL on, 0 while that Redis does not answer. Registration is once per process, so the
// check runs in a process of its own.
func TestRedisUpExportedOnlyWithRedis(t *testing.T) {
	if os.Getenv("CACHE_TEST_REDIS_UP_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRedisUpExportedOnlyWithRedis$", "-test.count=1")
		cmd.Env = append(os.Environ(), "CACHE_TEST_REDIS_UP_CHILD=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return
	}
	local := newTestCache(t, Options{})
	_, ok := exported(t, "apisix_identity_cache_redis_up")
	assert.False(t, ok, "redis_up exported by a cache without Redis")
	local.Close()

	// Nothing listens on port 1: the cache starts degraded.
	c, err := New(context.Background(), &Options{RedisURL: "redis://127.0.0.1:1/0", ValueSecret: testSecret})
	require.NoError(t, err)
	defer c.Close()
	v, ok := exported(t, "apisix_identity_cache_redis_up")
	assert.True(t, ok, "redis_up not exported by a cache with Redis")
	assert.Zero(t, v, "redis_up while Redis does not answer")
}
