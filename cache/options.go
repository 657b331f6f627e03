package cache

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// Options configures a Cache. A zero value for any field means "use the default".
type Options struct {
	// RedisURL: where the shared tier lives. "" runs the cache on the in-process tier alone
	// (one process is then the whole fleet). Forms:
	//   redis://[user:pass@]host:port[/db][?opts]            one server (rediss:// for TLS)
	//   unix://[user:pass@]/path/redis.sock[?db=N&opts]      one server on this host, through its unix socket
	//   redis+sentinel://[user:pass@]h1:p1[,h2:p2...]/MASTER[/db][?opts]
	//                                                        Sentinel; user:pass is sent to the sentinels and,
	//                                                        unless username=/password= are given, to the master
	//   redis+cluster://[user:pass@]h1:p1[,h2:p2...][?opts]  Cluster (seed nodes; db is always 0)
	// rediss+sentinel:// and rediss+cluster:// use TLS. opts are go-redis URL options
	// (dial_timeout=1s, pool_size=20, ...); an unknown option is an error. Default "".
	RedisURL string

	// ValueSecret: the fleet's key for the HMAC-SHA256 that seals every value the cache stores in
	// Redis (bound to the value's key and fetch time). Every process sharing the Redis must hold
	// the same secret; a value that fails the check is a miss. Required, at least MinValueSecret
	// (32) bytes, when RedisURL is set; unused without Redis. Default none.
	ValueSecret []byte

	// KeyPrefix: prepended to every Redis key and to the default Channel.
	// Default "apisix-identity:".
	KeyPrefix string

	// LocalSize: maximum number of entries in the in-process tier (least recently used go first).
	// Default 100000; must be >= 0.
	LocalSize int

	// LocalMaxBytes: maximum bytes the in-process tier holds, counting keys, values and about 200
	// bytes of bookkeeping per entry. Default 64 MiB (100 000 users of orgsync with values up to
	// ~400 bytes); must be >= 0.
	LocalMaxBytes int64

	// NoLocal turns the in-process tier off: every Get asks Redis (or, without Redis, the loader).
	// For measuring Redis-only hits; Set and fills then keep nothing in the process.
	NoLocal bool

	// LocalTTL: how long the in-process tier answers on its own before it asks Redis again.
	// It bounds how long a missed invalidation can linger. Default 5s; must be >= 0.
	LocalTTL time.Duration

	// Retention: how long Redis keeps a value, and the in-process tier keeps it as a fallback:
	// the horizon of the "last known value" served when the loader fails. Default 24h; must be >= 0.
	Retention time.Duration

	// LockTTL: lifetime of the cross-process fill lock, and the longest a single load may run.
	// Default 5s; must be >= 0.
	LockTTL time.Duration

	// LockWait: how long a process waits for another process's fill before it loads itself
	// (it stops earlier when the lock goes away without a value). Default 5s, the default
	// LockTTL: a holder whose loader is slow is still loading, and a second load would double
	// the calls to a source that is already slow. Callers bound their own wait with ctx.
	// Must be >= 0.
	LockWait time.Duration

	// OpTimeout: deadline of each Redis command, waiting for a pooled connection included.
	// Default 500ms; must be >= 0. A command that misses it does not mark Redis down by itself
	// (see the package documentation, Redis outages).
	OpTimeout time.Duration

	// ProbeInterval: how often Redis is pinged while the cache considers it down, so that the
	// cache recovers by itself. Default 1s; must be >= 0.
	ProbeInterval time.Duration

	// Channel: Redis pub/sub channel that carries invalidations. Default KeyPrefix+"invalidate".
	Channel string

	// Tracer records, for a Get whose context carries a recording span (a traced request), the
	// Redis read, the wait on a miss, the fill with its lock and its store, as spans. Default
	// nil: no spans; the in-process hit never starts one.
	Tracer trace.Tracer
}

const (
	defaultKeyPrefix     = "apisix-identity:"
	defaultLocalSize     = 100000
	defaultLocalMax      = 64 << 20
	defaultLocalTTL      = 5 * time.Second
	defaultRetention     = 24 * time.Hour
	defaultLockTTL       = 5 * time.Second
	defaultLockWait      = 5 * time.Second
	defaultOpTimeout     = 500 * time.Millisecond
	defaultProbeInterval = time.Second
	// defaultPoolSize replaces go-redis's 10 connections per CPU when the URL sets no pool_size,
	// so that a burst of concurrent requests does not queue for a connection (that wait counts
	// against OpTimeout, and a small machine has few CPUs).
	defaultPoolSize = 64
)

// withDefaults validates o and returns a copy with every zero field set to its default.
func (o *Options) withDefaults() (Options, error) {
	var out Options
	if o != nil {
		out = *o
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"LocalTTL", out.LocalTTL}, {"Retention", out.Retention}, {"LockTTL", out.LockTTL},
		{"LockWait", out.LockWait}, {"OpTimeout", out.OpTimeout}, {"ProbeInterval", out.ProbeInterval},
	} {
		if d.v < 0 {
			return out, fmt.Errorf("cache: option %s %q must be >= 0", d.name, d.v)
		}
	}
	if out.LocalSize < 0 {
		return out, fmt.Errorf("cache: option LocalSize %d must be >= 0", out.LocalSize)
	}
	if out.LocalMaxBytes < 0 {
		return out, fmt.Errorf("cache: option LocalMaxBytes %d must be >= 0", out.LocalMaxBytes)
	}
	if out.RedisURL != "" && len(out.ValueSecret) < MinValueSecret {
		// Without it anyone who can write Redis decides what the fleet serves: refuse to start.
		return out, fmt.Errorf("cache: option ValueSecret: %d bytes, want at least %d when RedisURL is set "+
			"(every process sharing the Redis holds the same secret)", len(out.ValueSecret), MinValueSecret)
	}
	if out.LocalMaxBytes == 0 {
		out.LocalMaxBytes = defaultLocalMax
	}
	if out.KeyPrefix == "" {
		out.KeyPrefix = defaultKeyPrefix
	}
	if out.LocalSize == 0 {
		out.LocalSize = defaultLocalSize
	}
	if out.LocalTTL == 0 {
		out.LocalTTL = defaultLocalTTL
	}
	if out.Retention == 0 {
		out.Retention = defaultRetention
	}
	if out.LockTTL == 0 {
		out.LockTTL = defaultLockTTL
	}
	if out.LockWait == 0 {
		out.LockWait = defaultLockWait
	}
	if out.OpTimeout == 0 {
		out.OpTimeout = defaultOpTimeout
	}
	if out.ProbeInterval == 0 {
		out.ProbeInterval = defaultProbeInterval
	}
	if out.Channel == "" {
		out.Channel = out.KeyPrefix + "invalidate"
	}
	return out, nil
}

// localEntries is the entry bound of the in-process tier: 0 when it is off.
func (o *Options) localEntries() int {
	if o.NoLocal {
		return 0
	}
	return o.LocalSize
}

// newRedisClient builds a go-redis client for one of the RedisURL forms. Errors name the option
// and never repeat the URL, which may carry a password.
func newRedisClient(rawURL string) (redis.UniversalClient, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, errors.New("cache: option RedisURL: missing scheme (want redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://)")
	}
	wrap := func(err error) error {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the whole URL, password included
		}
		return fmt.Errorf("cache: option RedisURL: %w", err)
	}
	switch strings.ToLower(scheme) {
	case "redis", "rediss", "unix":
		// unix:///path/redis.sock?db=0: a Redis on this host through its
		// unix socket, whose commands skip the TCP stack on both sides.
		if _, err := url.Parse(rawURL); err != nil {
			return nil, wrap(err)
		}
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, wrap(err)
		}
		o.ContextTimeoutEnabled = true
		o.Protocol = protocolOf(o.Protocol)
		if o.PoolSize == 0 {
			o.PoolSize = defaultPoolSize
		}
		return redis.NewClient(o), nil
	case "redis+sentinel", "rediss+sentinel":
		o, err := parseSentinelURL(strings.TrimSuffix(strings.ToLower(scheme), "+sentinel"), rest)
		if err != nil {
			return nil, wrap(err)
		}
		return redis.NewFailoverClient(o), nil
	case "redis+cluster", "rediss+cluster":
		o, err := parseClusterURL(strings.TrimSuffix(strings.ToLower(scheme), "+cluster"), rest)
		if err != nil {
			return nil, wrap(err)
		}
		return redis.NewClusterClient(o), nil
	default:
		return nil, fmt.Errorf("cache: option RedisURL: unknown scheme %q (want redis, rediss, unix, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster)", scheme)
	}
}

// multiHostURL turns "[userinfo@]h1:p1,h2:p2/path?query" into a URL with scheme, the first host,
// and every further host as an addr= parameter (the go-redis form).
func multiHostURL(scheme, rest string) (*url.URL, error) {
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	list := strings.Split(hosts, ",")
	for _, h := range list {
		if h == "" {
			return nil, errors.New("empty host in host list")
		}
	}
	u, err := url.Parse(scheme + "://" + userinfo + list[0] + tail)
	if err != nil {
		return nil, err
	}
	if len(list) > 1 {
		q := u.Query()
		for _, h := range list[1:] {
			q.Add("addr", h)
		}
		u.RawQuery = q.Encode()
	}
	return u, nil
}

// parseSentinelURL reads "[userinfo@]h1:p1,h2:p2/MASTER[/db][?opts]".
func parseSentinelURL(scheme, rest string) (*redis.FailoverOptions, error) {
	u, err := multiHostURL(scheme, rest)
	if err != nil {
		return nil, err
	}
	// Path: /MASTER[/db]. go-redis wants master_name as a parameter and /db as the path.
	parts := strings.FieldsFunc(u.Path, func(r rune) bool { return r == '/' })
	q := u.Query()
	if len(parts) == 0 || len(parts) > 2 {
		return nil, errors.New("sentinel URL needs the path /MASTER or /MASTER/DB")
	}
	if q.Has("master_name") {
		return nil, errors.New("sentinel URL: give the master name in the path, not as master_name")
	}
	q.Set("master_name", parts[0])
	u.Path = ""
	if len(parts) == 2 {
		u.Path = "/" + parts[1]
	}
	u.RawQuery = q.Encode()
	o, err := redis.ParseFailoverURL(u.String())
	if err != nil {
		return nil, err
	}
	if o.Username == "" && o.Password == "" {
		o.Username, o.Password = o.SentinelUsername, o.SentinelPassword
	}
	o.ContextTimeoutEnabled = true
	o.Protocol = protocolOf(o.Protocol)
	if o.PoolSize == 0 {
		o.PoolSize = defaultPoolSize
	}
	return o, nil
}

// parseClusterURL reads "[userinfo@]h1:p1,h2:p2[?opts]".
func parseClusterURL(scheme, rest string) (*redis.ClusterOptions, error) {
	u, err := multiHostURL(scheme, rest)
	if err != nil {
		return nil, err
	}
	if u.Path != "" && u.Path != "/" {
		return nil, errors.New("cluster URL takes no path (Redis Cluster has only db 0)")
	}
	u.Path = ""
	o, err := redis.ParseClusterURL(u.String())
	if err != nil {
		return nil, err
	}
	o.ContextTimeoutEnabled = true
	o.Protocol = protocolOf(o.Protocol)
	if o.PoolSize == 0 {
		o.PoolSize = defaultPoolSize
	}
	return o, nil
}

// protocolOf is the RESP version the client speaks: the URL's protocol=
// when it names one, else 2. go-redis defaults to RESP3, which checks every
// pooled connection for push notifications before each command (a third of
// the client's CPU on a cache hit, measured by test/bench's Redis-hit
// variant); this cache uses nothing RESP3 brings (its invalidations are
// Pub/Sub messages, which RESP2 carries).
func protocolOf(fromURL int) int {
	if fromURL == 0 {
		return 2
	}
	return fromURL
}
