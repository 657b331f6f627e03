// Package logfile is the runner's RUNNER_LOG_FILE: an append-only file that
// is reopened on request (SIGHUP), so logrotate's rename-then-signal rotation
// works without copytruncate and without losing lines.
package logfile

import (
	"fmt"
	"os"
	"sync"
)

// File is an io.Writer onto a file that can be reopened by path.
type File struct {
	path string

	mu sync.Mutex
	f  *os.File
}

// Open opens (creating it, mode 0640) path for appending.
func Open(path string) (*File, error) {
	f := &File{path: path}
	if err := f.Reopen(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Write appends p. One Write is one log line: slog's handlers write a whole
// record at once, so lines never interleave.
func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return 0, os.ErrClosed
	}
	return f.f.Write(p)
}

// Reopen closes the file and opens path again: after a rotation renamed it,
// later lines go to a new file at path. On failure the old file is kept.
func (f *File) Reopen() error {
	nf, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("logfile: %w", err)
	}
	f.mu.Lock()
	old := f.f
	f.f = nf
	f.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// Close closes the file; later writes fail.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}
