package cache

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// needEnv returns the variable, or stops the test: t.Fatal under CI=true, t.Skip otherwise.
func needEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set (required under CI)", name)
		}
		t.Skipf("%s is not set; e.g. redis-server --port 6390 --save '' --appendonly no --daemonize yes and REDIS_TEST_URL=redis://127.0.0.1:6390/0", name)
	}
	return v
}

// testPrefix isolates one test's keys and channel on a shared Redis, and deletes them when the
// test ends (when REDIS_TEST_URL is set).
func testPrefix(t testing.TB) string {
	prefix := fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	if url := os.Getenv("REDIS_TEST_URL"); url != "" {
		t.Cleanup(func() {
			rc := rawClient(t, url)
			iter := rc.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
			for iter.Next(context.Background()) {
				_ = rc.Del(context.Background(), iter.Val()).Err()
			}
		})
	}
	return prefix
}

// testSecret is the fleet's value secret in tests: every cache of a test shares it, as a fleet does.
var testSecret = []byte("test value secret, 32 bytes long")

func newTestCache(t testing.TB, o Options) *Cache {
	t.Helper()
	if o.ValueSecret == nil {
		o.ValueSecret = testSecret
	}
	if o.ProbeInterval == 0 {
		// Recover quickly in tests.
		o.ProbeInterval = 100 * time.Millisecond
	}
	c, err := New(context.Background(), &o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawClient is a plain go-redis client to look at what the cache stored.
func rawClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(o)
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// counter is a loader that counts its calls and returns "<prefix><n>".
type counter struct {
	n     atomic.Int64
	delay time.Duration
	fail  atomic.Bool
}

func (l *counter) load(prefix string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		n := l.n.Add(1)
		if l.delay > 0 {
			select {
			case <-time.After(l.delay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if l.fail.Load() {
			return nil, errLoader
		}
		return []byte(prefix + strconv.FormatInt(n, 10)), nil
	}
}

var errLoader = fmt.Errorf("keycloak down")

// eventually polls cond every 5ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Small assertions (testify's require pulls a module go.mod does not list yet).

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func equal[T any](t testing.TB, got, want T, what ...any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: got %#v, want %#v", fmt.Sprint(what...), got, want)
	}
}

func isTrue(t testing.TB, cond bool, what ...any) {
	t.Helper()
	if !cond {
		t.Fatalf("expected: %s", fmt.Sprint(what...))
	}
}
