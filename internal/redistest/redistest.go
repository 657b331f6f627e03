// Package redistest runs what the cache and reliability tests need of Redis:
// a redis-server of the test's own, which it may kill, freeze and restart,
// and a proxy that makes a live Redis slow, which no real server does on
// demand.
package redistest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Server is a redis-server started for one test, without persistence.
type Server struct {
	t    testing.TB
	port int
	args []string
	cmd  *exec.Cmd
}

// Start runs redis-server (with args added to its command line) on a free
// port until the test ends. Without redis-server on the PATH the test is
// skipped, or fails under CI=true, where nothing may be skipped.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not on PATH (required under CI)")
		}
		t.Skip("redis-server is not on PATH")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s := &Server{t: t, port: port, args: args}
	s.Start()
	t.Cleanup(func() {
		if s.cmd != nil {
			_ = s.cmd.Process.Signal(syscall.SIGCONT) // a frozen server would not die
			s.Kill()
		}
	})
	return s
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the redis:// URL of database 0.
func (s *Server) URL() string { return fmt.Sprintf("redis://%s/0", s.Addr()) }

// Start (re)starts the server on its port and waits until it accepts
// connections.
func (s *Server) Start() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no"}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", s.Addr(), 100*time.Millisecond); err == nil {
			_ = c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatal("redis-server did not start")
}

// Kill stops the server at once (SIGKILL); Start brings it back, empty.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Signal sends sig to the server (SIGSTOP freezes it, SIGCONT thaws it).
func (s *Server) Signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// SlowProxy is a TCP proxy in front of a Redis that holds each reply chunk
// for the delay set before passing it on: a Redis alive but slow.
type SlowProxy struct {
	ln    net.Listener
	delay atomic.Pointer[func() time.Duration]
	mu    sync.Mutex
	conns []net.Conn
}

// StartSlowProxy proxies to target (host:port), with no delay until
// SetDelay, until the test ends.
func StartSlowProxy(t testing.TB, target string) *SlowProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &SlowProxy{ln: ln}
	p.SetDelay(func() time.Duration { return 0 })
	go p.serve(target)
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
	return p
}

func (p *SlowProxy) serve(target string) {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() {
			defer c.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					time.Sleep((*p.delay.Load())())
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// URL is the redis:// URL of database 0 through the proxy.
func (p *SlowProxy) URL() string { return "redis://" + p.ln.Addr().String() + "/0" }

// SetDelay sets how long each reply chunk is held from now on.
func (p *SlowProxy) SetDelay(f func() time.Duration) { p.delay.Store(&f) }
