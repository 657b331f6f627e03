// Package logtest collects what a test needs to read: a process's output or
// the log lines written while it runs, from goroutines other than the test's.
package logtest

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer safe for concurrent writers and readers (exec's
// output copier, the code under test, the test itself).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Count is how many lines written so far contain s.
func (b *Buffer) Count(s string) int {
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// Capture sends slog's default logger to a Buffer, as text lines from level
// up, for the rest of the test.
func Capture(t testing.TB, level slog.Level) *Buffer {
	t.Helper()
	buf := &Buffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level})))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return buf
}
