package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis GET floor. A Redis-only hit waits on one GET; what that GET alone
// costs a process is measured here, in a process of its own that does nothing
// else: the runner's Redis client (go-redis, the pool size the cache sets), one
// key, a value the size of an orgsync entry, the same connections as the
// runner's client and the same length of run. The no-op's CPU per call plus this
// is the least CPU per call any hit that waits on Redis can cost with this
// client, whatever the plugins do; against the no-op it bounds the Redis-only
// target from below.

// floorFlag names the child's mode: the bench binary runs itself with it.
const floorFlag = "redis-floor"

const (
	floorKey       = "bench:redis-floor"
	floorValueSize = 320 // an orgsync entry as the cache seals it: 41 bytes of envelope and ~280 of snapshot
	floorPoolSize  = 64  // cache.defaultPoolSize, what the runner's client gets
)

// runRedisFloor is the child's work: GETs of one key on conns goroutines for
// dur; it returns how many were answered and the process's user + system CPU
// over the timed part only (main prints them as one line, "gets cpu_ns").
func runRedisFloor(url string, conns int, dur time.Duration) (gets int, cpu time.Duration, err error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return 0, 0, err
	}
	opt.PoolSize = floorPoolSize
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, floorKey, bytes.Repeat([]byte{'v'}, floorValueSize), time.Hour).Err(); err != nil {
		return 0, 0, err
	}
	get := func() error {
		b, err := rdb.Get(ctx, floorKey).Bytes()
		if err == nil && len(b) != floorValueSize {
			err = fmt.Errorf("GET %s: %d bytes, want %d", floorKey, len(b), floorValueSize)
		}
		return err
	}
	for range conns * 16 { // warm the pool the way the runs warm the runner
		if err := get(); err != nil {
			return 0, 0, err
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	cpu0 := selfCPU()
	end := time.Now().Add(dur)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			var err error
			for time.Now().Before(end) {
				if err = get(); err != nil {
					break
				}
				n++
			}
			mu.Lock()
			gets += n
			if first == nil {
				first = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return gets, selfCPU() - cpu0, first
}

// redisFloor runs the child against url with conns connections and returns
// its CPU per GET.
func (e *env) redisFloor(url string, conns int) (time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	out, err := exec.Command(self, "-"+floorFlag, url, "-floor-conns", strconv.Itoa(conns), "-dur", e.o.dur.String()).Output()
	if err != nil {
		return 0, fmt.Errorf("the Redis GET floor on %d connections: %w", conns, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, fmt.Errorf("the Redis GET floor: unexpected output %q", out)
	}
	gets, err1 := strconv.ParseInt(f[0], 10, 64)
	cpuNs, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || gets == 0 {
		return 0, fmt.Errorf("the Redis GET floor: unexpected output %q", out)
	}
	return time.Duration(cpuNs / gets), nil
}
