package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr []string // substrings
	}{
		{"no scheme", Options{RedisURL: "localhost:6379"}, []string{"RedisURL", "scheme"}},
		{"unknown scheme", Options{RedisURL: "http://localhost:6379"}, []string{"RedisURL", `"http"`}},
		{"unknown parameter", Options{RedisURL: "redis://localhost:6379/0?pool_sise=3"}, []string{"RedisURL", "pool_sise"}},
		{"bad db", Options{RedisURL: "redis://localhost:6379/abc"}, []string{"RedisURL", "database"}},
		{"bad port hides password", Options{RedisURL: "redis://u:s3cret@localhost:port/0"}, []string{"RedisURL"}},
		{"sentinel without master", Options{RedisURL: "redis+sentinel://h1:26379,h2:26379"}, []string{"RedisURL", "MASTER"}},
		{"sentinel master twice", Options{RedisURL: "redis+sentinel://h1:26379/m?master_name=m"}, []string{"RedisURL", "master_name"}},
		{"sentinel unknown parameter", Options{RedisURL: "redis+sentinel://h1:26379/m?nope=1"}, []string{"RedisURL", "nope"}},
		{"cluster with db", Options{RedisURL: "redis+cluster://h1:7000,h2:7001/1"}, []string{"RedisURL", "path"}},
		{"cluster empty host", Options{RedisURL: "redis+cluster://h1:7000,,h2:7001"}, []string{"RedisURL", "empty host"}},
		{"negative LocalTTL", Options{LocalTTL: -time.Second}, []string{"LocalTTL", "-1s"}},
		{"negative LocalSize", Options{LocalSize: -1}, []string{"LocalSize"}},
		{"negative OpTimeout", Options{OpTimeout: -1}, []string{"OpTimeout"}},
		{"negative LocalMaxBytes", Options{LocalMaxBytes: -1}, []string{"LocalMaxBytes"}},
		{"redis without value secret", Options{RedisURL: "redis://localhost:6379/0", ValueSecret: []byte{}}, []string{"ValueSecret", "0 bytes", "at least 32"}},
		{"short value secret", Options{RedisURL: "redis://localhost:6379/0", ValueSecret: []byte("31 bytes, one short of the mark")}, []string{"ValueSecret", "31 bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.RedisURL != "" && tc.opts.ValueSecret == nil {
				tc.opts.ValueSecret = testSecret
			}
			c, err := New(context.Background(), &tc.opts)
			if err == nil || c != nil {
				t.Fatalf("New: got (%v, %v), want an error", c, err)
			}
			for _, s := range tc.wantErr {
				isTrue(t, strings.Contains(err.Error(), s), "error ", err, " contains ", s)
			}
			isTrue(t, !strings.Contains(err.Error(), "s3cret"), "error hides the password: ", err)
		})
	}
}

func TestRedisURLForms(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		c, err := newRedisClient("redis://user:pw@localhost:6390/3?dial_timeout=1s")
		noErr(t, err)
		defer c.Close()
		o := c.(*redis.Client).Options()
		equal(t, "localhost:6390", o.Addr)
		equal(t, 3, o.DB)
		equal(t, "pw", o.Password)
		isTrue(t, o.ContextTimeoutEnabled)
		equal(t, 2, o.Protocol, "RESP2 unless the URL asks for another")
	})
	t.Run("unix socket", func(t *testing.T) {
		c, err := newRedisClient("unix://user:pw@/run/redis/redis.sock?db=2&dial_timeout=1s")
		noErr(t, err)
		defer c.Close()
		o := c.(*redis.Client).Options()
		equal(t, "unix", o.Network)
		equal(t, "/run/redis/redis.sock", o.Addr)
		equal(t, 2, o.DB)
		equal(t, "pw", o.Password)
		equal(t, time.Second, o.DialTimeout)
		isTrue(t, o.ContextTimeoutEnabled)
		equal(t, 2, o.Protocol)
		equal(t, defaultPoolSize, o.PoolSize)
	})
	t.Run("protocol", func(t *testing.T) {
		c, err := newRedisClient("redis://localhost:6390/0?protocol=3")
		noErr(t, err)
		defer c.Close()
		equal(t, 3, c.(*redis.Client).Options().Protocol, "the URL's protocol= wins")
		o, err := parseSentinelURL("redis", "s1:26379/mymaster")
		noErr(t, err)
		equal(t, 2, o.Protocol, "sentinel")
		co, err := parseClusterURL("redis", "n1:7000,n2:7001")
		noErr(t, err)
		equal(t, 2, co.Protocol, "cluster")
	})
	t.Run("sentinel", func(t *testing.T) {
		o, err := parseSentinelURL("redis", "u:pw@s1:26379,s2:26380,s3:26381/mymaster/2?dial_timeout=1s")
		noErr(t, err)
		equal(t, []string{"s1:26379", "s2:26380", "s3:26381"}, o.SentinelAddrs)
		equal(t, "mymaster", o.MasterName)
		equal(t, 2, o.DB)
		equal(t, "pw", o.SentinelPassword)
		equal(t, "pw", o.Password, "userinfo also authenticates to the master")
		equal(t, time.Second, o.DialTimeout)
		isTrue(t, o.ContextTimeoutEnabled)

		o, err = parseSentinelURL("rediss", ":spw@s1:26379/mymaster?password=mpw")
		noErr(t, err)
		equal(t, "spw", o.SentinelPassword)
		equal(t, "mpw", o.Password)
		equal(t, 0, o.DB)
		isTrue(t, o.TLSConfig != nil, "TLS for rediss")

		c, err := newRedisClient("redis+sentinel://s1:26379,s2:26380/mymaster")
		noErr(t, err)
		noErr(t, c.Close())
	})
	t.Run("cluster", func(t *testing.T) {
		c, err := newRedisClient("redis+cluster://h1:7000,h2:7001,h3:7002?read_only=true")
		noErr(t, err)
		defer c.Close()
		cc, ok := c.(*redis.ClusterClient)
		isTrue(t, ok)
		equal(t, []string{"h1:7000", "h2:7001", "h3:7002"}, cc.Options().Addrs)
		isTrue(t, cc.Options().ReadOnly)
	})
}

func TestDefaults(t *testing.T) {
	o, err := (*Options)(nil).withDefaults()
	noErr(t, err)
	equal(t, "apisix-identity:", o.KeyPrefix)
	equal(t, "apisix-identity:invalidate", o.Channel)
	equal(t, 100000, o.LocalSize)
	equal(t, int64(64<<20), o.LocalMaxBytes)
	equal(t, 5*time.Second, o.LocalTTL)
	equal(t, 24*time.Hour, o.Retention)
	equal(t, 5*time.Second, o.LockTTL)
	equal(t, 5*time.Second, o.LockWait)
	equal(t, 500*time.Millisecond, o.OpTimeout)
}

// A value filled through Redis's unix socket is read by another process of
// the fleet through TCP, and the other way round: one server, both doors.
func TestRedisOverItsUnixSocket(t *testing.T) {
	unixURL, tcpURL := needEnv(t, "REDIS_TEST_UNIX_URL"), needEnv(t, "REDIS_TEST_URL")
	prefix := testPrefix(t)
	overUnix := newTestCache(t, Options{RedisURL: unixURL, KeyPrefix: prefix, OpTimeout: time.Second})
	overTCP := newTestCache(t, Options{RedisURL: tcpURL, KeyPrefix: prefix, OpTimeout: time.Second})
	p := Policy{Fresh: time.Minute, Stale: time.Minute}
	ctx := context.Background()
	for _, tc := range []struct {
		name         string
		write, read  *Cache
		key, payload string
	}{
		{"unix then tcp", overUnix, overTCP, "a", "filled over the unix socket"},
		{"tcp then unix", overTCP, overUnix, "b", "filled over tcp"},
	} {
		res, err := tc.write.Get(ctx, tc.key, p, func(context.Context) ([]byte, error) { return []byte(tc.payload), nil })
		require.NoError(t, err, tc.name)
		require.Equal(t, SourceLoader, res.Source, tc.name)
		res, err = tc.read.Get(ctx, tc.key, p, func(context.Context) ([]byte, error) {
			return nil, errors.New("the loader ran: the value was not read from Redis")
		})
		require.NoError(t, err, tc.name)
		assert.Equal(t, SourceRedis, res.Source, tc.name)
		assert.Equal(t, tc.payload, string(res.Value), tc.name)
	}
}
