package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// procCPU is a process's user+system CPU time so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at state.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick, nil
}

// procRSS is a process's resident set (VmRSS) in bytes.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// runnerProc is one runner process started as APISIX starts it.
type runnerProc struct {
	name    string
	metrics string // host:port of its /metrics; "" when it serves none
	*apisix.Runner
}

// startMeasuredRunner starts a runner that serves /metrics on a port of its
// own, where its allocation count is read.
func (e *env) startMeasuredRunner(name, keyFile string, extra map[string]string) (*runnerProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	env := e.runnerEnv(keyFile, extra)
	env["RUNNER_METRICS_ADDR"] = addr
	r, err := startRunner(name, e.binary, env)
	if err != nil {
		return nil, err
	}
	r.metrics = addr
	if _, ok := scrapeCounter(addr, mallocsMetric); !ok {
		r.stop()
		return nil, fmt.Errorf("runner %s: no %s on http://%s/metrics", name, mallocsMetric, addr)
	}
	return r, nil
}

// mallocsMetric counts the heap objects the runner process has allocated
// (client_golang's Go collector; runtime/metrics /gc/heap/allocs:objects
// plus the tiny allocations).
const mallocsMetric = "go_memstats_mallocs_total"

// driveCounted is drive with the runner's CPU, memory and, when it serves
// /metrics, its allocations over the run. A scrape allocates in the runner
// too: two scrapes back to back before the run measure one (and whatever
// the idle runner allocates meanwhile), and that is taken off.
func (r *runnerProc) driveCounted(src source, e *expect, conns int, dur time.Duration, maxCalls int) (*measurement, error) {
	var before, scrape float64
	counted := r.metrics != ""
	if counted {
		a, ok1 := scrapeCounter(r.metrics, mallocsMetric)
		b, ok2 := scrapeCounter(r.metrics, mallocsMetric)
		before, scrape, counted = b, b-a, ok1 && ok2
	}
	m, err := drive(r.Socket(), src, e, conns, dur, maxCalls, r.Pid())
	if err != nil || !counted {
		return m, err
	}
	if after, ok := scrapeCounter(r.metrics, mallocsMetric); ok {
		m.allocs, m.hasAllocs = max(after-before-scrape, 0), true
	}
	return m, nil
}

func startRunner(name, binary string, env map[string]string) (*runnerProc, error) {
	list := make([]string, 0, len(env))
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: binary, Args: []string{"run"}, Env: list,
		StopTimeout: 5 * time.Second, StartTimeout: 20 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("runner %s: %w", name, err)
	}
	return &runnerProc{name: name, Runner: r}, nil
}

// stop stops the runner and reports a panic in its output.
func (r *runnerProc) stop() error {
	_ = r.Stop()
	if out := r.Output(); strings.Contains(out, "panic") {
		return fmt.Errorf("runner %s panicked:\n%s", r.name, tail(out, 4000))
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// redisServer is a redis-server of the benchmark's own, in a temp dir: the
// sweep puts a million entries in it, and nothing another session does on the
// shared test Redis (flushes, invalidations) reaches the figures.
type redisServer struct {
	cmd *exec.Cmd
	url string
	// unixURL reaches the same server through its unix socket.
	unixURL string
	dir     string
}

func startRedis(dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (apt-get install redis-server): %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--unixsocket", sock, "--unixsocketperm", "700", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	rs := &redisServer{cmd: cmd, url: fmt.Sprintf("redis://127.0.0.1:%d/0", port), unixURL: "unix://" + sock + "?db=0", dir: dir}
	for i := 0; i < 200; i++ {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond); err == nil {
			c.Close()
			return rs, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	rs.stop()
	return nil, fmt.Errorf("redis-server did not listen on port %d", port)
}

func (rs *redisServer) stop() {
	_ = rs.cmd.Process.Kill()
	_ = rs.cmd.Wait()
}

// countingProxy stands between runners and the real Keycloak and records
// when each user's organizations were asked for; the answers are Keycloak's.
type countingProxy struct {
	url string
	srv *http.Server

	mu     sync.Mutex
	calls  map[string][]time.Time // user id -> organization lookups
	total  int
	errors int // organization lookups that did not complete (cancelled by the runner, or Keycloak unreachable)
	// completed: the lookups Keycloak answered, per user.
	completed map[string][]time.Time
}

var orgLookup = regexp.MustCompile(`/organizations/members/([^/]+)/organizations$`)

func startCountingProxy(target string) (*countingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{url: "http://" + ln.Addr().String(), calls: map[string][]time.Time{}, completed: map[string][]time.Time{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	// A runner that gives up on a call (its timeout, or the fill's LockTTL)
	// cancels it: counted, not logged line by line.
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if f, ok := r.Context().Value(failedKey{}).(*bool); ok {
			*f = true
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	p.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		failed := new(bool)
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), failedKey{}, failed)))
		p.mu.Lock()
		p.total++
		if m := orgLookup.FindStringSubmatch(r.URL.Path); m != nil {
			p.calls[m[1]] = append(p.calls[m[1]], at)
			if *failed {
				p.errors++
			} else {
				p.completed[m[1]] = append(p.completed[m[1]], at)
			}
		}
		p.mu.Unlock()
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *countingProxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
}

func (p *countingProxy) reset() {
	p.mu.Lock()
	p.calls, p.completed = map[string][]time.Time{}, map[string][]time.Time{}
	p.total, p.errors = 0, 0
	p.mu.Unlock()
}

type failedKey struct{}

// orgCalls returns a copy of the organization lookups per user: all of them,
// or only those Keycloak answered.
func (p *countingProxy) orgCalls(completedOnly bool) map[string][]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	src := p.calls
	if completedOnly {
		src = p.completed
	}
	out := make(map[string][]time.Time, len(src))
	for k, v := range src {
		out[k] = append([]time.Time(nil), v...)
	}
	return out
}

func (p *countingProxy) orgCallCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.calls {
		n += len(v)
	}
	return n
}

func (p *countingProxy) errorCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errors
}
