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

// The floor's two ratios, with the figures of the 0c7fa9a run at 1 connection
// (no-op 21.4 µs, bare GET 41.7 µs, hit 4.74 x the no-op): the floor is the
// no-op plus the GET, and the hit is read against that sum, not against the
// no-op. A round without a floor measured gives neither.
func TestFloorRatios(t *testing.T) {
	noop, get := 21400*time.Nanosecond, 41700*time.Nanosecond
	hit := time.Duration(4.74 * float64(noop))
	floor, over := floorRatios(hit, noop, get)
	assert.InDelta(t, 2.95, floor, 0.01, "(21.4 + 41.7) / 21.4")
	assert.InDelta(t, 1.61, over, 0.01, "101.4 / (21.4 + 41.7)")

	floor, over = floorRatios(hit, noop, 0)
	assert.Zero(t, floor)
	assert.Zero(t, over)
	floor, over = floorRatios(hit, 0, get)
	assert.Zero(t, floor)
	assert.Zero(t, over)
}
