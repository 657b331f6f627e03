package keycloak

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logtest"
)

// At the default level (warn) an operator who sees the breaker open also sees it close: each
// state change is one line, at the same level, and healthy calls log nothing.
func TestBreakerStateChangesLoggedAtWarnBothWays(t *testing.T) {
	logs := logtest.Capture(t, slog.LevelWarn)

	s := newStandIn(t)
	c := s.client(t, Options{Timeout: 100 * time.Millisecond, FailureThreshold: 2, CoolOff: 100 * time.Millisecond})
	ctx := context.Background()
	ok := func(w http.ResponseWriter, r *http.Request, _ string) { fmt.Fprint(w, "[]") }
	s.setHandler(ok)
	for range 5 {
		if _, err := c.UserOrganizations(ctx, "u1"); err != nil {
			t.Fatal(err)
		}
	}
	if logs.String() != "" {
		t.Fatalf("healthy calls logged at warn:\n%s", logs.String())
	}
	for range 2 { // two outages, each opened and closed once
		s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) { w.WriteHeader(http.StatusBadGateway) })
		for range 6 {
			_, _ = c.UserOrganizations(ctx, "u1")
		}
		s.setHandler(ok)
		time.Sleep(150 * time.Millisecond)
		for range 3 {
			if _, err := c.UserOrganizations(ctx, "u1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := logs.String()
	down := strings.Count(out, "level=WARN msg=\"keycloak unreachable")
	up := strings.Count(out, "level=WARN msg=\"keycloak reachable again")
	if down != 2 || up != 2 || strings.Count(out, "\n") != 4 {
		t.Fatalf("want 2 outage and 2 recovery lines at warn, nothing else; got:\n%s", out)
	}
}
