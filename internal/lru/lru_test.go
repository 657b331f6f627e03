package lru

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStaysWithinBudget(t *testing.T) {
	c := New[string, string](16 * 1000)
	for i := 0; i < 10000; i++ {
		c.Add(fmt.Sprint(i), "v", 100)
		require.LessOrEqual(t, c.Bytes(), int64(16*1000))
	}
	assert.LessOrEqual(t, c.Len(), 160)
	assert.Greater(t, c.Len(), 100, "most of the budget is used")
	_, ok := c.Get("9999")
	assert.True(t, ok, "the newest entry is kept")
	_, ok = c.Get("0")
	assert.False(t, ok, "the oldest entry is evicted")
}

func TestRecentlyUsedSurvives(t *testing.T) {
	c := New[int, int](shardCount * 300)
	// Fill one key's shard, touching key 0 all along: it must survive.
	c.Add(0, 0, 100)
	for i := 1; i < 5000; i++ {
		c.Add(i, i, 100)
		_, ok := c.Get(0)
		require.True(t, ok, "key 0 evicted after %d adds although used each time", i)
	}
}

func TestReplaceAdjustsSize(t *testing.T) {
	c := New[string, int](shardCount * 1000)
	c.Add("a", 1, 10)
	c.Add("a", 2, 500)
	v, ok := c.Get("a")
	require.True(t, ok)
	assert.Equal(t, 2, v)
	assert.Equal(t, int64(500), c.Bytes())
	c.Remove("a")
	assert.Equal(t, int64(0), c.Bytes())
	assert.Equal(t, 0, c.Len())
}

func TestOversizedEntryNotKept(t *testing.T) {
	c := New[string, int](shardCount * 100)
	c.Add("big", 1, 101)
	_, ok := c.Get("big")
	assert.False(t, ok)
	assert.Equal(t, int64(0), c.Bytes())
}

func TestZeroBudgetKeepsNothing(t *testing.T) {
	c := New[string, int](0)
	c.Add("a", 1, 1)
	_, ok := c.Get("a")
	assert.False(t, ok)
}

func TestConcurrentUse(t *testing.T) {
	c := New[int, int](shardCount * 1000)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				c.Add(g*10000+i, i, 10)
				c.Get(g*10000 + i/2)
			}
		}(g)
	}
	wg.Wait()
	assert.LessOrEqual(t, c.Bytes(), int64(shardCount*1000))
}

func BenchmarkGetHit(b *testing.B) {
	c := New[uint64, *int](1 << 20)
	v := 1
	for i := uint64(0); i < 1000; i++ {
		c.Add(i, &v, 100)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := uint64(0)
		for pb.Next() {
			c.Get(i % 1000)
			i++
		}
	})
}

// A user's run of requests reads the shard without its lock: Get of the
// entry last put at the front returns while the lock is held elsewhere.
func TestHotEntryIsReadWithoutTheLock(t *testing.T) {
	c := New[string, int](shardCount * 1000)
	c.Add("a", 1, 10)
	v, ok := c.Get("a")
	require.True(t, ok)
	require.Equal(t, 1, v)
	s := c.shard("a")
	s.mu.Lock()
	got := make(chan int, 1)
	go func() {
		v, _ := c.Get("a")
		got <- v
	}()
	select {
	case v := <-got:
		assert.Equal(t, 1, v)
	case <-time.After(2 * time.Second):
		t.Error("Get of the hot entry waited for the lock")
	}
	s.mu.Unlock()
}

// What was removed, replaced or evicted is never served from the hot slot
// to a Get that starts after the change.
func TestHotEntryFollowsChanges(t *testing.T) {
	c := New[int, int](shardCount * 300) // 3 entries of 100 per shard
	c.Add(0, 1, 100)
	_, _ = c.Get(0)
	c.Remove(0)
	_, ok := c.Get(0)
	assert.False(t, ok, "removed")

	c.Add(0, 1, 100)
	_, _ = c.Get(0)
	c.Add(0, 2, 100)
	v, ok := c.Get(0)
	require.True(t, ok)
	assert.Equal(t, 2, v, "replaced")

	// Fill key 0's shard with other keys until 0 is evicted.
	s := c.shard(0)
	for i := 1; ; i++ {
		if c.shard(i) != s {
			continue
		}
		c.Add(i, i, 100)
		if _, ok := s.items[0]; !ok {
			break
		}
	}
	_, ok = c.Get(0)
	assert.False(t, ok, "evicted")
}

// The hot entry is moved to the front again before half the shard went in
// front of it: used all along, it is never evicted.
func TestHotEntrySurvivesAFullShard(t *testing.T) {
	c := New[int, int](shardCount * 100 * 10) // 100 entries of 10 per shard
	c.Add(0, 0, 10)
	s := c.shard(0)
	for i := 1; i < 20000; i++ {
		if c.shard(i) != s {
			continue
		}
		c.Add(i, i, 10)
		_, ok := c.Get(0)
		require.True(t, ok, "key 0 evicted after %d adds although used each time", i)
	}
}

// Under concurrent adds, replacements, removals and gets, a Get returns the
// value of its own key, never another's.
func TestHotEntryUnderConcurrency(t *testing.T) {
	c := New[int, int](shardCount * 50)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				k := (g + i) % 24
				switch i % 5 {
				case 0:
					c.Add(k, k*1000+i%7, 10)
				case 1:
					c.Remove(k)
				default:
					if v, ok := c.Get(k); ok && v/1000 != k {
						t.Errorf("Get(%d) = %d: another key's value", k, v)
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
}
