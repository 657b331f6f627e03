package keycloak

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A Keycloak that stops answering (frozen) under concurrent load, then answers again: the
// breaker opens, and after the cool-off one trial closes it.
func TestBreakerClosesAfterAFreezeUnderLoad(t *testing.T) {
	s := newStandIn(t)
	c := s.client(t, Options{Timeout: 100 * time.Millisecond, FailureThreshold: 5, CoolOff: 200 * time.Millisecond})
	var frozen atomic.Bool
	s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) {
		if frozen.Load() {
			<-r.Context().Done()
			return
		}
		fmt.Fprint(w, "[]")
	})
	if _, err := c.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, _ = c.UserOrganizations(ctx, "u1")
				cancel()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(100 * time.Millisecond)
	frozen.Store(true)
	time.Sleep(500 * time.Millisecond)
	if c.Healthy() {
		t.Fatal("breaker still closed while Keycloak is frozen")
	}
	frozen.Store(false)
	deadline := time.Now().Add(2 * time.Second)
	for !c.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("breaker still open 2 s after Keycloak answers again (cool-off 200 ms)")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
