package inflight

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestWaitForCallsUnderWay(t *testing.T) {
	var c Counter
	end := c.Begin()
	assert.EqualValues(t, 1, c.Count())
	assert.False(t, c.Wait(20*time.Millisecond), "a call is still under way")
	go func() { time.Sleep(20 * time.Millisecond); end() }()
	assert.True(t, c.Wait(time.Second))
	assert.EqualValues(t, 0, c.Count())

	var none *Counter
	none.Begin()()
	assert.True(t, none.Wait(0), "no counter, nothing to wait for")
}
