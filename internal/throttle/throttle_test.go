package throttle

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestOnePerPeriod(t *testing.T) {
	var e Every
	start := time.Unix(1000, 0)
	assert.True(t, e.Allow(start, time.Minute), "the first event passes")
	assert.False(t, e.Allow(start.Add(59*time.Second), time.Minute))
	assert.True(t, e.Allow(start.Add(time.Minute), time.Minute))

	var other Every
	assert.True(t, other.Allow(start.Add(time.Minute), time.Minute), "each throttle is its own")
}

func TestRacingEventsOneWins(t *testing.T) {
	var e Every
	var passed atomic.Int64
	var wg sync.WaitGroup
	now := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e.Allow(now, time.Minute) {
				passed.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 1, passed.Load())
}
