package cache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The attack: whoever can write Redis (and holds no fleet secret) puts a snapshot of its
// choosing under a user's key, granting roles, groups or an active account. The cache must not
// serve it: it is a miss, loaded again from the source, and counted.
func TestForgedRedisValueIsAMiss(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	c := newTestCache(t, o)
	raw := rawClient(t, url)
	forged := []byte(`{"account":"active","orgs":[],"roles":["admin"],"groups":["/staff"]}`)
	attacker := &Cache{opts: Options{KeyPrefix: o.KeyPrefix, ValueSecret: []byte("a secret the fleet does not hold!")}}

	for _, tc := range []struct {
		name   string
		stored func(key string) []byte
		reason string
	}{
		{"no MAC (the envelope before values were sealed)", func(string) []byte {
			b := make([]byte, 9+len(forged))
			b[0] = 1
			binary.BigEndian.PutUint64(b[1:9], uint64(time.Now().UnixMilli()))
			copy(b[9:], forged)
			return b
		}, rejectFormat},
		{"sealed under another secret", func(key string) []byte {
			return attacker.sealEntry(key, Entry{Value: forged, FetchedAt: fetchTime()})
		}, rejectMAC},
		{"garbage", func(string) []byte { return []byte{envelopeVersion, 1, 2} }, rejectFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "forged:" + tc.name
			require.NoError(t, raw.Set(ctx, o.KeyPrefix+"v:"+key, tc.stored(key), time.Hour).Err())
			before := testutil.ToFloat64(rejectedValues.WithLabelValues(tc.reason))
			var l counter
			r, err := c.Get(ctx, key, Policy{Fresh: time.Minute, Stale: time.Hour}, l.load("keycloak"))
			require.NoError(t, err)
			assert.Equal(t, SourceLoader, r.Source, "the forged value is a miss")
			assert.Equal(t, "keycloak1", string(r.Value))
			assert.Greater(t, testutil.ToFloat64(rejectedValues.WithLabelValues(tc.reason)), before, "counted as %s", tc.reason)

			// PeekRemote (orgsync's last known list) refuses it the same way.
			require.NoError(t, raw.Set(ctx, o.KeyPrefix+"v:"+key, tc.stored(key), time.Hour).Err())
			_, err = c.PeekRemote(ctx, key)
			assert.ErrorIs(t, err, ErrMiss)
		})
	}
}

// A genuine value copied to another key (another user's, or a variant with more rights) fails:
// the MAC covers the key.
func TestValueMovedToAnotherKeyFails(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	c := newTestCache(t, o)
	raw := rawClient(t, url)
	p := Policy{Fresh: time.Minute, Stale: time.Hour}
	var admin, user counter

	_, err := c.Get(ctx, "admin", p, admin.load("admin-roles"))
	require.NoError(t, err)
	b, err := raw.Get(ctx, o.KeyPrefix+"v:admin").Bytes()
	require.NoError(t, err)
	require.NoError(t, raw.Set(ctx, o.KeyPrefix+"v:user", b, time.Hour).Err())

	// A second process: the first keeps its own value in its in-process tier.
	d := newTestCache(t, o)
	before := testutil.ToFloat64(rejectedMAC)
	r, err := d.Get(ctx, "user", p, user.load("user-roles"))
	require.NoError(t, err)
	assert.Equal(t, SourceLoader, r.Source)
	assert.Equal(t, "user-roles1", string(r.Value))
	assert.Greater(t, testutil.ToFloat64(rejectedMAC), before)

	// The genuine value still reads under its own key.
	r, err = d.Get(ctx, "admin", p, admin.load("admin-roles"))
	require.NoError(t, err)
	assert.Equal(t, SourceRedis, r.Source)
	assert.Equal(t, int64(1), admin.n.Load())
}

// An old genuine value cannot be given a new date: the MAC covers the fetch time, so a replay
// keeps its age and stops being served when that age passes the caller's Stale.
func TestRedatedValueFails(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	c := newTestCache(t, o)
	raw := rawClient(t, url)
	old := c.sealEntry("u", Entry{Value: []byte("before the user was disabled"), FetchedAt: fetchTime().Add(-2 * time.Hour)})
	binary.BigEndian.PutUint64(old[1:9], uint64(time.Now().UnixMilli()))
	require.NoError(t, raw.Set(ctx, o.KeyPrefix+"v:u", old, time.Hour).Err())

	var l counter
	r, err := c.Get(ctx, "u", Policy{Fresh: time.Minute, Stale: time.Hour}, l.load("now"))
	require.NoError(t, err)
	assert.Equal(t, SourceLoader, r.Source)
	assert.Equal(t, "now1", string(r.Value))
}

// A value dated in the future (a member's clock far ahead, or anything that can seal) would be
// fresh until the clock catches up with it; beyond the skew allowance it is not believed.
func TestFutureFetchTimeIsNotFresh(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	c := newTestCache(t, o)
	raw := rawClient(t, url)
	p := Policy{Fresh: time.Minute, Stale: time.Hour}

	for _, tc := range []struct {
		name   string
		ahead  time.Duration
		served bool
	}{
		{"a year ahead", 365 * 24 * time.Hour, false},
		{"an hour ahead", time.Hour, false},
		{"just past the allowance", maxClockSkew + time.Second, false},
		{"within the allowance", time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "future:" + tc.name
			v := c.sealEntry(key, Entry{Value: []byte("pinned"), FetchedAt: fetchTime().Add(tc.ahead)})
			require.NoError(t, raw.Set(ctx, o.KeyPrefix+"v:"+key, v, time.Hour).Err())
			var l counter
			r, err := c.Get(ctx, key, p, l.load("fresh"))
			require.NoError(t, err)
			if tc.served {
				assert.Equal(t, SourceRedis, r.Source)
				assert.Equal(t, "pinned", string(r.Value))
				return
			}
			assert.Equal(t, SourceLoader, r.Source, "a future date is not fresh")
			assert.Equal(t, "fresh1", string(r.Value))
		})
	}

	// The in-process tier holds the same rule (this process's clock stepped back).
	n := newTestCache(t, Options{})
	n.local.put(localEntry{key: "k", value: []byte("pinned"), fetched: time.Now().Add(time.Hour), storedAt: time.Now()})
	var l counter
	r, err := n.Get(ctx, "k", p, l.load("fresh"))
	require.NoError(t, err)
	assert.Equal(t, SourceLoader, r.Source)
}

// Without a secret of at least 32 bytes a cache with Redis does not start: a fleet whose values
// anyone can forge is not a configuration to run by accident.
func TestValueSecretRequiredWithRedis(t *testing.T) {
	_, err := New(ctx, &Options{RedisURL: "redis://127.0.0.1:1/0"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ValueSecret")
	c, err := New(ctx, &Options{})
	require.NoError(t, err, "no Redis, no secret needed")
	require.NoError(t, c.Close())
}

// State (orgsync's admin-event watcher position) is sealed too: a position a Redis writer set far
// ahead would leave the watcher blind to every event until then; forged, it reads as unset.
func TestForgedStateIsUnset(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	c := newTestCache(t, o)
	raw := rawClient(t, url)
	require.NoError(t, c.SetState(ctx, "pos", "1700000000000"))
	v, err := c.GetState(ctx, "pos")
	require.NoError(t, err)
	assert.Equal(t, "1700000000000", v)

	require.NoError(t, raw.Set(ctx, o.KeyPrefix+"state:pos", "9999999999999", 0).Err())
	_, err = c.GetState(ctx, "pos")
	assert.ErrorIs(t, err, ErrMiss)
	// A genuine state moved to another name fails as well.
	require.NoError(t, c.SetState(ctx, "other", "1"))
	b, err := raw.Get(ctx, o.KeyPrefix+"state:other").Bytes()
	require.NoError(t, err)
	require.NoError(t, raw.Set(ctx, o.KeyPrefix+"state:pos", b, 0).Err())
	_, err = c.GetState(ctx, "pos")
	assert.ErrorIs(t, err, ErrMiss)
}

// The MAC state is pooled and reused: values sealed and opened on many goroutines at once, keys of
// every length (one past what the pool keeps), must each carry the MAC of their own key and bytes,
// the same a fresh HMAC gives (what a runner of the previous release wrote still opens: a rolling
// upgrade), and never open under another key.
func TestSealedConcurrentlyWithTheMACsOwnLayout(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	c := &Cache{opts: Options{ValueSecret: secret}}
	reference := func(redisKey string, ms uint64, value []byte) []byte {
		h := hmac.New(sha256.New, secret)
		var n [8]byte
		h.Write([]byte(macDomain))
		binary.BigEndian.PutUint64(n[:], uint64(len(redisKey)))
		h.Write(n[:])
		h.Write([]byte(redisKey))
		binary.BigEndian.PutUint64(n[:], ms)
		h.Write(n[:])
		h.Write(value)
		return h.Sum(nil)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				key := fmt.Sprintf("v:user-%d-%d-", g, i) + strings.Repeat("k", (i*37)%(maxPooledMACScratch+64))
				value := []byte(strings.Repeat(fmt.Sprint(g, i), i%50))
				e := Entry{Value: value, FetchedAt: time.UnixMilli(time.Now().UnixMilli() - int64(i))}
				b := c.seal(key, e)
				if !assert.Equal(t, reference(key, uint64(e.FetchedAt.UnixMilli()), value), b[9:envelopeHeader], "the MAC of %q", key) {
					return
				}
				got, ok := c.open(key, b)
				if !assert.True(t, ok, "its own key opens it") || !assert.Equal(t, value, got.Value) {
					return
				}
				_, ok = c.open(key+"x", b)
				if !assert.False(t, ok, "another key does not open it") {
					return
				}
			}
		}()
	}
	wg.Wait()
}
