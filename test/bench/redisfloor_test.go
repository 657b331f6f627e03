package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The floor's child runs GETs against a real Redis on several connections and
// reports how many were answered (with the whole value) and the CPU it took.
func TestRedisFloorCountsAnsweredGets(t *testing.T) {
	url := os.Getenv("REDIS_TEST_URL")
	if url == "" {
		t.Fatal("REDIS_TEST_URL is not set: start Redis with scripts/redis.sh start and source .work/redis.env")
	}
	gets, cpu, err := runRedisFloor(url, 4, 200*time.Millisecond)
	require.NoError(t, err)
	assert.Greater(t, gets, 4*16, "GETs answered after the warm-up")
	assert.Greater(t, cpu, time.Duration(0), "the process's CPU over the timed part")

}
