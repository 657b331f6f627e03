package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// FeedEntry is one record of a feed.
type FeedEntry struct {
	ID     string // Redis stream ID ("<unix ms>-<seq>"), increasing
	Time   time.Time
	Fields map[string]string
}

// GetState returns the small value stored under name (no expiry). ErrMiss when unset.
func (c *Cache) GetState(ctx context.Context, name string) (string, error) {
	if c.rdb == nil {
		if v, ok := c.mem.getState(name); ok {
			return v, nil
		}
		return "", fmt.Errorf("cache: state %s: %w", name, ErrMiss)
	}
	octx, cancel := c.opCtx(ctx)
	b, err := c.rdb.Get(octx, c.stateKey(name)).Bytes()
	cancel()
	c.observe(ctx, err)
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("cache: state %s: %w", name, ErrMiss)
	}
	if err != nil {
		return "", fmt.Errorf("cache: state %s: %w", name, err)
	}
	// Sealed like values: state that fails (orgsync's watcher position moved by a Redis
	// writer, far ahead so that the watcher misses every event) is as if unset.
	e, ok := c.open(c.stateKey(name), b)
	if !ok {
		return "", fmt.Errorf("cache: state %s: %w", name, ErrMiss)
	}
	return string(e.Value), nil
}

// SetState stores value under name, without expiry, shared by the fleet.
func (c *Cache) SetState(ctx context.Context, name, value string) error {
	if c.rdb == nil {
		c.mem.setState(name, value)
		return nil
	}
	octx, cancel := c.opCtx(ctx)
	err := c.rdb.Set(octx, c.stateKey(name), c.seal(c.stateKey(name), Entry{Value: []byte(value), FetchedAt: fetchTime()}), 0).Err()
	cancel()
	c.observe(ctx, err)
	if err != nil {
		return fmt.Errorf("cache: set state %s: %w", name, err)
	}
	return nil
}

// AppendFeed adds one record to the feed stream, keeping about maxLen records (Redis trims
// approximately, in whole blocks of ~100, so a short feed may hold up to ~100 more). Without Redis
// the feed is an exact ring of maxLen records in this process.
func (c *Cache) AppendFeed(ctx context.Context, stream string, maxLen int64, fields map[string]string) error {
	if maxLen <= 0 {
		return fmt.Errorf("cache: feed %s: maxLen %d must be > 0", stream, maxLen)
	}
	if len(fields) == 0 {
		return fmt.Errorf("cache: feed %s: no fields", stream)
	}
	if c.rdb == nil {
		c.mem.appendFeed(stream, int(maxLen), fields)
		return nil
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	values := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		values = append(values, k, fields[k])
	}
	octx, cancel := c.opCtx(ctx)
	err := c.rdb.XAdd(octx, &redis.XAddArgs{Stream: c.feedKey(stream), MaxLen: maxLen, Approx: true, Values: values}).Err()
	cancel()
	c.observe(ctx, err)
	if err != nil {
		return fmt.Errorf("cache: append feed %s: %w", stream, err)
	}
	return nil
}

// FeedKey is the Redis key of the feed stream: what a signature of its entries is bound to.
func (c *Cache) FeedKey(stream string) string { return c.feedKey(stream) }

// ReadFeed returns the newest count records of the feed, oldest first.
func (c *Cache) ReadFeed(ctx context.Context, stream string, count int64) ([]FeedEntry, error) {
	if count <= 0 {
		return nil, fmt.Errorf("cache: feed %s: count %d must be > 0", stream, count)
	}
	if c.rdb == nil {
		return c.mem.readFeed(stream, int(count)), nil
	}
	octx, cancel := c.opCtx(ctx)
	msgs, err := c.rdb.XRevRangeN(octx, c.feedKey(stream), "+", "-", count).Result()
	cancel()
	c.observe(ctx, err)
	if err != nil {
		return nil, fmt.Errorf("cache: read feed %s: %w", stream, err)
	}
	out := make([]FeedEntry, len(msgs))
	for i, m := range msgs {
		f := make(map[string]string, len(m.Values))
		for k, v := range m.Values {
			if s, ok := v.(string); ok {
				f[k] = s
			} else {
				f[k] = fmt.Sprint(v)
			}
		}
		out[len(msgs)-1-i] = FeedEntry{ID: m.ID, Time: streamIDTime(m.ID), Fields: f}
	}
	return out, nil
}

func streamIDTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// memStore keeps leases, state and feeds when the cache runs without Redis.
type memStore struct {
	mu     sync.Mutex
	leases map[string]memLease
	state  map[string]string
	feeds  map[string]*memFeed
}

type memLease struct {
	token   string
	expires time.Time
}

type memFeed struct {
	ring   []FeedEntry // oldest first, len <= max
	lastMs int64
	seq    int64
}

func (m *memStore) acquire(name, token string, ttl time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if cur, ok := m.leases[name]; ok && now.Before(cur.expires) {
		return false
	}
	if m.leases == nil {
		m.leases = make(map[string]memLease)
	}
	m.leases[name] = memLease{token: token, expires: now.Add(ttl)}
	return true
}

func (m *memStore) renew(name, token string, ttl time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	cur, ok := m.leases[name]
	if !ok || cur.token != token || !now.Before(cur.expires) {
		return false
	}
	m.leases[name] = memLease{token: token, expires: now.Add(ttl)}
	return true
}

// release mirrors releaseScript: 1 released, 0 absent or expired, -1 held by another token.
func (m *memStore) release(name, token string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[name]
	switch {
	case !ok || !time.Now().Before(cur.expires):
		return 0
	case cur.token != token:
		return -1
	}
	delete(m.leases, name)
	return 1
}

func (m *memStore) getState(name string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.state[name]
	return v, ok
}

func (m *memStore) setState(name, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == nil {
		m.state = make(map[string]string)
	}
	m.state[name] = value
}

func (m *memStore) appendFeed(stream string, maxLen int, fields map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.feeds == nil {
		m.feeds = make(map[string]*memFeed)
	}
	f := m.feeds[stream]
	if f == nil {
		f = &memFeed{}
		m.feeds[stream] = f
	}
	now := time.Now().UnixMilli()
	if now > f.lastMs {
		f.lastMs, f.seq = now, 0
	} else {
		f.seq++
	}
	e := FeedEntry{
		ID:     strconv.FormatInt(f.lastMs, 10) + "-" + strconv.FormatInt(f.seq, 10),
		Time:   time.UnixMilli(f.lastMs),
		Fields: make(map[string]string, len(fields)),
	}
	for k, v := range fields {
		e.Fields[k] = v
	}
	f.ring = append(f.ring, e)
	if over := len(f.ring) - maxLen; over > 0 {
		f.ring = slices.Delete(f.ring, 0, over)
	}
}

func (m *memStore) readFeed(stream string, count int) []FeedEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.feeds[stream]
	if f == nil {
		return []FeedEntry{}
	}
	start := max(len(f.ring)-count, 0)
	return slices.Clone(f.ring[start:])
}
