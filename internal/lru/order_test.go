package lru

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newOrder(maxBytes int64, maxEntries int) *Order[string, int] {
	o := &Order[string, int]{}
	o.Init(maxBytes, maxEntries)
	return o
}

// An entry bound evicts the least recently used entry past it, whatever the bytes.
func TestOrderEntryBound(t *testing.T) {
	o := newOrder(1<<20, 3)
	for i, k := range []string{"a", "b", "c"} {
		require.True(t, o.Put(k, i, 1, nil))
	}
	_, _ = o.Get("a") // b is now the least recently used
	require.True(t, o.Put("d", 3, 1, nil))
	_, ok := o.Get("b")
	assert.False(t, ok, "the least recently used entry went")
	for _, k := range []string{"a", "c", "d"} {
		_, ok := o.Get(k)
		assert.True(t, ok, k)
	}
	n, bytes := o.Size()
	assert.Equal(t, 3, n)
	assert.Equal(t, int64(3), bytes)
}

// admit sees the value the key holds and can keep it.
func TestOrderAdmit(t *testing.T) {
	o := newOrder(1<<20, 0)
	var seen []int
	keepNewer := func(v int) func(int, bool) bool {
		return func(cur int, found bool) bool {
			if found {
				seen = append(seen, cur)
			}
			return !found || cur <= v
		}
	}
	require.True(t, o.Put("k", 5, 10, keepNewer(5)), "nothing there: admitted")
	assert.False(t, o.Put("k", 3, 10, keepNewer(3)), "an older value is refused")
	v, _ := o.Get("k")
	assert.Equal(t, 5, v, "the newer value stays")
	assert.True(t, o.Put("k", 7, 20, keepNewer(7)))
	v, _ = o.Get("k")
	assert.Equal(t, 7, v)
	assert.Equal(t, []int{5, 5}, seen, "admit is given the value held")
	_, bytes := o.Size()
	assert.Equal(t, int64(20), bytes, "a replaced entry's size is given back")

	// Refused before the size check: an oversized value that is not admitted drops nothing.
	assert.False(t, o.Put("k", 1, 1<<30, func(int, bool) bool { return false }))
	v, ok := o.Get("k")
	assert.True(t, ok)
	assert.Equal(t, 7, v)
	// Admitted but too large: not kept, and the older value goes with it.
	assert.False(t, o.Put("k", 9, 1<<30, nil))
	_, ok = o.Get("k")
	assert.False(t, ok)
}

// After Flush nothing is served, not even the entry last used (the hot one).
func TestOrderFlush(t *testing.T) {
	o := newOrder(1<<20, 0)
	o.Put("a", 1, 1, nil)
	_, _ = o.Get("a")
	o.Flush()
	_, ok := o.Get("a")
	assert.False(t, ok)
	n, bytes := o.Size()
	assert.Equal(t, 0, n)
	assert.Equal(t, int64(0), bytes)
	require.True(t, o.Put("a", 2, 1, nil), "usable after a flush")
	v, _ := o.Get("a")
	assert.Equal(t, 2, v)
}
