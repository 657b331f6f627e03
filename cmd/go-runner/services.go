package main

import (
	"time"
)

// services are the process-wide clients the plugins share. Route configs come
// and go without any cleanup call from the runner, so clients live here, are
// built once, and closed on exit.
type services struct {
	closers []func()
}

func start(cfg *config) (*services, error) {
	return &services{}, nil
}

func (s *services) stop(grace time.Duration) {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}
