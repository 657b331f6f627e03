package identity

import (
	"sync"
	"testing"
	"time"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type nopEmitter struct{}

func (nopEmitter) Emit(pkgHTTP.Request, *Identity) error { return nil }

func newHandoff(sub string, emitted bool) *Handoff {
	return &Handoff{Identity: &Identity{Subject: sub, OrgsSource: "token"}, Emitter: nopEmitter{}, Emitted: emitted}
}

func TestChainsTakeWithoutHand(t *testing.T) {
	c := NewChains()
	r := &fakeRequest{id: 1, token: 7}
	other := &fakeRequest{id: 2, token: 8}

	assert.False(t, c.FollowerKnown(r), "nothing learned yet")
	assert.Nil(t, c.Take(r), "no hand-off was left")
	assert.True(t, c.FollowerKnown(r), "Take marks the route as having a follower")
	assert.False(t, c.FollowerKnown(other), "another route is not marked")

	t.Run("a new request on the same route", func(t *testing.T) {
		assert.True(t, c.FollowerKnown(&fakeRequest{id: 99, token: 7}))
	})
}

func TestChainsHandThenTake(t *testing.T) {
	tests := []struct {
		name    string
		emitted bool
	}{
		{name: "not emitted", emitted: false},
		{name: "emitted while learning", emitted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChains()
			r := &fakeRequest{id: 1, token: 7}
			c.FollowerKnown(r) // userinfo asks first, which starts the learn window
			h := newHandoff("u-1", tt.emitted)
			c.Hand(r, h)

			got := c.Take(r)
			require.NotNil(t, got)
			assert.Same(t, h, got)
			assert.Equal(t, "u-1", got.Identity.Subject)
			assert.Nil(t, c.Take(r), "a hand-off is taken once")
		})
	}
}

func TestChainsTakeOtherRequestObject(t *testing.T) {
	c := NewChains()
	r1 := &fakeRequest{id: 1, token: 7}
	r2 := &fakeRequest{id: 1, token: 7} // same id, another object (another connection)
	c.Hand(r1, newHandoff("u-1", false))
	assert.Nil(t, c.Take(r2))
	assert.NotNil(t, c.Take(r1))
}

func TestChainsTakeAfterReuse(t *testing.T) {
	c := NewChains()
	r := &fakeRequest{id: 1, token: 7}
	c.Hand(r, newHandoff("u-1", false))

	// The runner pools request objects: the same object now serves request 2,
	// on which userinfo never ran (a plugin before it answered, say).
	r.id = 2
	assert.Nil(t, c.Take(r), "a hand-off of request 1 must not reach request 2")

	r.id = 1
	assert.Nil(t, c.Take(r), "the stale hand-off was forgotten")
}

func TestChainsTakeTooOld(t *testing.T) {
	c := NewChains()
	r := &fakeRequest{id: 1, token: 7}
	c.Hand(r, newHandoff("u-1", false))
	c.mu.Lock()
	c.handoffs[r].at = time.Now().Add(-handoffMaxAge - time.Second)
	c.mu.Unlock()
	assert.Nil(t, c.Take(r))
}

func TestChainsLearnWindow(t *testing.T) {
	tests := []struct {
		name    string
		age     time.Duration // how long ago the route was first seen
		emitted bool
		stored  bool
	}{
		{name: "emitted inside the window is stored", age: learnWindow - time.Second, emitted: true, stored: true},
		{name: "emitted after the window is not stored", age: learnWindow + time.Second, emitted: true, stored: false},
		{name: "not emitted after the window is stored", age: learnWindow + time.Second, emitted: false, stored: true},
		{name: "not emitted long after is stored", age: time.Hour, emitted: false, stored: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChains()
			r := &fakeRequest{id: 1, token: 7}
			c.FollowerKnown(r)
			c.mu.Lock()
			require.Contains(t, c.routes, uint32(7))
			c.routes[7].firstSeen = time.Now().Add(-tt.age)
			c.mu.Unlock()

			c.Hand(r, newHandoff("u-1", tt.emitted))
			if tt.stored {
				assert.NotNil(t, c.Take(r))
			} else {
				assert.Nil(t, c.Take(r))
			}
		})
	}

	t.Run("emitted on an unseen route is stored", func(t *testing.T) {
		c := NewChains()
		r := &fakeRequest{id: 1, token: 7}
		c.Hand(r, newHandoff("u-1", true))
		assert.NotNil(t, c.Take(r))
	})
}

func TestChainsWithoutConfToken(t *testing.T) {
	c := NewChains()
	r := &tokenlessRequest{Request: &fakeRequest{id: 1, token: 7}}
	assert.False(t, c.FollowerKnown(r))
	assert.Nil(t, c.Take(r))
	assert.False(t, c.FollowerKnown(r), "without a conf token nothing is learned")
	c.mu.Lock()
	assert.Empty(t, c.routes)
	c.mu.Unlock()

	h := newHandoff("u-1", true)
	c.Hand(r, h)
	assert.Same(t, h, c.Take(r), "the hand-off itself still works")
}

func TestChainsPruneOldHandoffs(t *testing.T) {
	c := NewChains()
	old := time.Now().Add(-2 * handoffMaxAge)
	for i := 0; i < 4096; i++ {
		r := &fakeRequest{id: uint32(i), token: 1}
		c.Hand(r, newHandoff("u", false))
		c.handoffs[r].at = old
	}
	c.lastPrune = time.Time{} // pruning runs at most once a second
	fresh := &fakeRequest{id: 5000, token: 1}
	c.Hand(fresh, newHandoff("u-fresh", false))
	c.mu.Lock()
	n := len(c.handoffs)
	c.mu.Unlock()
	assert.Equal(t, 1, n, "expired hand-offs are dropped once the map is full")
	assert.NotNil(t, c.Take(fresh))
}

// Hand-offs kept only for learning never grow past the cap, however many
// requests a route without follower sees in its first seconds.
func TestChainsLearningHandoffsAreCapped(t *testing.T) {
	c := NewChains()
	for i := 0; i < 3*maxLearningHandoffs; i++ {
		c.Hand(&fakeRequest{id: uint32(i), token: 9}, newHandoff("u", true))
	}
	c.mu.Lock()
	n := len(c.handoffs)
	c.mu.Unlock()
	assert.LessOrEqual(t, n, maxLearningHandoffs)
	followerNeeds := &fakeRequest{id: 99999, token: 9}
	c.Hand(followerNeeds, newHandoff("u", false))
	assert.NotNil(t, c.Take(followerNeeds), "a hand-off a follower needs is always kept")
}

func TestChainsPruneRoutes(t *testing.T) {
	c := NewChains()
	for i := 0; i < 1024; i++ {
		c.FollowerKnown(&fakeRequest{id: 1, token: uint32(i)})
	}
	c.mu.Lock()
	for tok, info := range c.routes {
		if tok%2 == 0 {
			info.lastSeen = time.Now().Add(-25 * time.Hour)
		}
	}
	c.mu.Unlock()
	c.FollowerKnown(&fakeRequest{id: 1, token: 5000}) // a new route triggers the prune
	c.mu.Lock()
	defer c.mu.Unlock()
	assert.Len(t, c.routes, 513)
	assert.NotContains(t, c.routes, uint32(0))
	assert.Contains(t, c.routes, uint32(1))
}

func TestChainsConcurrent(t *testing.T) {
	// Many connections, each with its own request object, hand off and take
	// at the same time (run with -race).
	c := NewChains()
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := &fakeRequest{token: uint32(g % 4)}
			for i := 0; i < 200; i++ {
				r.id = uint32(i)
				c.FollowerKnown(r)
				h := newHandoff("u", false)
				c.Hand(r, h)
				if got := c.Take(r); got != h {
					t.Errorf("goroutine %d request %d: got %p, want %p", g, i, got, h)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}
