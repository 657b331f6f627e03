package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// sampleEvery: one answer in sampleEvery gets its identity headers decoded
// and checked; every answer gets its frame type and action checked.
const sampleEvery = 64

// source gives the frame of call number i and the subject its answer must
// name. Prepared sources index frames built ahead; the working-set sweep
// mints one per call (its cost is then in the client's figures, and said so).
type source func(i int) (frame []byte, sub string, err error)

func prepared(frames [][]byte, subs []string) source {
	return func(i int) ([]byte, string, error) {
		k := i % len(frames)
		return frames[k], subs[k], nil
	}
}

// measurement is one timed run of a variant.
type measurement struct {
	calls     int
	elapsed   time.Duration
	lat       []time.Duration // sorted
	runnerCPU time.Duration   // the runner process's utime+stime over the run
	clientCPU time.Duration   // this process's
	rss       int64           // the runner's VmRSS at the end
	allocs    float64         // heap objects the runner allocated over the run
	hasAllocs bool
}

func (m *measurement) allocsPerCall() float64 {
	if m.calls == 0 || !m.hasAllocs {
		return 0
	}
	return m.allocs / float64(m.calls)
}

func (m *measurement) pct(p float64) time.Duration {
	if len(m.lat) == 0 {
		return 0
	}
	i := int(p * float64(len(m.lat)-1))
	return m.lat[i]
}

func (m *measurement) throughput() float64 { return float64(m.calls) / m.elapsed.Seconds() }

func (m *measurement) cpuPerCall() time.Duration {
	if m.calls == 0 {
		return 0
	}
	return m.runnerCPU / time.Duration(m.calls)
}

func (m *measurement) clientPerCall() time.Duration {
	if m.calls == 0 {
		return 0
	}
	return m.clientCPU / time.Duration(m.calls)
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// drive sends calls over conns connections to socket, each connection
// synchronous like one APISIX worker's cosocket, until dur has passed or
// maxCalls calls were made (0: no limit). pid is the process whose CPU and
// memory are reported (0: none). Any answer failing its check ends the run
// with an error: figures of wrong answers are worthless.
func drive(socket string, src source, e *expect, conns int, dur time.Duration, maxCalls int, pid int) (*measurement, error) {
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.DialTimeout("unix", socket, time.Second)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		cs[i] = c
	}
	var (
		next     atomic.Int64
		failed   atomic.Bool
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
		lats     = make([][]time.Duration, conns)
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		failed.Store(true)
	}
	var cpu0 time.Duration
	if pid > 0 {
		cpu0, _ = procCPU(pid)
	}
	self0 := selfCPU()
	start := time.Now()
	deadline := start.Add(dur)
	for k := range cs {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			c := cs[k]
			_ = c.SetDeadline(deadline.Add(60 * time.Second))
			// One read syscall per answer rather than two (header, payload).
			rd := bufio.NewReaderSize(c, 64<<10)
			buf := make([]byte, 0, 16<<10)
			lat := make([]time.Duration, 0, 1<<14)
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if maxCalls > 0 && i >= maxCalls {
					break
				}
				f, sub, err := src(i)
				if err != nil {
					fail(err)
					break
				}
				t0 := time.Now()
				if t0.After(deadline) {
					break
				}
				if _, err := c.Write(f); err != nil {
					fail(fmt.Errorf("write: %w", err))
					break
				}
				ty, payload, err := readFrame(rd, buf)
				if err != nil {
					fail(fmt.Errorf("read: %w", err))
					break
				}
				lat = append(lat, time.Since(t0))
				buf = payload[:0]
				if err := checkAnswer(ty, payload, e, sub, i%sampleEvery == 0); err != nil {
					fail(fmt.Errorf("call %d: %w", i, err))
					break
				}
			}
			lats[k] = lat
		}(k)
	}
	if dur > time.Minute && pid > 0 {
		// Long runs (the sweep) say how they are going.
		stopProgress := make(chan struct{})
		defer close(stopProgress)
		go func() {
			t := time.NewTicker(20 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					n := next.Load()
					rss, _ := procRSS(pid)
					logf("  %d calls, %.0f calls/s, runner RSS %s MB", n, float64(n)/time.Since(start).Seconds(), mb(rss))
				}
			}
		}()
	}
	wg.Wait()
	m := &measurement{elapsed: time.Since(start), clientCPU: selfCPU() - self0}
	if firstErr != nil {
		return nil, firstErr
	}
	if pid > 0 {
		cpu1, _ := procCPU(pid)
		m.runnerCPU = cpu1 - cpu0
		m.rss, _ = procRSS(pid)
	}
	for _, l := range lats {
		m.lat = append(m.lat, l...)
	}
	m.calls = len(m.lat)
	slices.Sort(m.lat)
	return m, nil
}

// oneAnswer makes one call and returns the raw answer frame, for the echo
// server that measures the client's own cost.
func oneAnswer(socket string, f []byte) ([]byte, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(f); err != nil {
		return nil, err
	}
	ty, payload, err := readFrame(c, nil)
	if err != nil {
		return nil, err
	}
	return frame(ty, payload), nil
}

// echoServer answers every frame with the same canned answer frame: driving
// it with the benchmark's client gives the client's own cost per call (plus
// this server's read and write, and the socket round trip: an upper bound).
func echoServer(dir string, answer []byte) (string, func(), error) {
	sock := filepath.Join(dir, "echo.sock")
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 0, 16<<10)
				for {
					_, p, err := readFrame(c, buf)
					if err != nil {
						return
					}
					buf = p[:0]
					if _, err := c.Write(answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return sock, func() { ln.Close() }, nil
}
