package keycloak

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOptionsDefaultsAndErrors(t *testing.T) {
	c, err := New(&Options{URL: "http://127.0.0.1:1/", Realm: "r", ClientID: "id", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	o := c.Options()
	if o.URL != "http://127.0.0.1:1" || o.Timeout != 3*time.Second || o.FailureThreshold != 5 || o.CoolOff != 10*time.Second {
		t.Fatalf("defaults = %+v", o)
	}
	cases := []struct {
		name string
		opts *Options
		want string
	}{
		{"nil", nil, "options are required"},
		{"no url", &Options{Realm: "r", ClientID: "id", ClientSecret: "s"}, "URL is required"},
		{"relative url", &Options{URL: "sso.example.org", Realm: "r", ClientID: "id", ClientSecret: "s"}, `URL "sso.example.org"`},
		{"no realm", &Options{URL: "http://x", ClientID: "id", ClientSecret: "s"}, "Realm is required"},
		{"no secret", &Options{URL: "http://x", Realm: "r", ClientID: "id"}, "ClientSecret are required"},
		{"negative timeout", &Options{URL: "http://x", Realm: "r", ClientID: "id", ClientSecret: "s", Timeout: -1}, "Timeout -1ns"},
		{"negative threshold", &Options{URL: "http://x", Realm: "r", ClientID: "id", ClientSecret: "s", FailureThreshold: -2}, "FailureThreshold -2"},
		{"negative cool-off", &Options{URL: "http://x", Realm: "r", ClientID: "id", ClientSecret: "s", CoolOff: -time.Second}, "CoolOff -1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "keycloak: ") {
				t.Fatalf("New = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// standIn is a Keycloak stand-in that only injects faults; real behaviour is
// tested against the real Keycloak in admin_test.go and events_test.go.
type standIn struct {
	*httptest.Server
	tokens    atomic.Int64 // token requests
	admin     atomic.Int64 // admin requests
	expiresIn int
	mu        sync.Mutex
	handler   func(w http.ResponseWriter, r *http.Request, token string) // admin requests
	tokenFail func(w http.ResponseWriter) bool
}

func newStandIn(t *testing.T) *standIn {
	s := &standIn{expiresIn: 300}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/realms/r/protocol/openid-connect/token" {
			n := s.tokens.Add(1)
			s.mu.Lock()
			fail := s.tokenFail
			s.mu.Unlock()
			if fail != nil && fail(w) {
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"tok-%d","expires_in":%d,"token_type":"Bearer"}`, n, s.expiresIn)
			return
		}
		s.admin.Add(1)
		s.mu.Lock()
		h := s.handler
		s.mu.Unlock()
		h(w, r, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	t.Cleanup(s.Close)
	s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) { fmt.Fprint(w, "[]") })
	return s
}

func (s *standIn) setHandler(h func(w http.ResponseWriter, r *http.Request, token string)) {
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

func (s *standIn) client(t *testing.T, o Options) *Client {
	t.Helper()
	o.URL, o.Realm, o.ClientID, o.ClientSecret = s.URL, "r", "id", "secret"
	c, err := New(&o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokenCachedAndShared(t *testing.T) {
	s := newStandIn(t)
	c := s.client(t, Options{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.UserOrganizations(context.Background(), "u1"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := s.tokens.Load(); n != 1 {
		t.Fatalf("token requests = %d, want 1 (cached, single flight)", n)
	}
	if n := c.Requests(EndpointUserOrganizations); n != 20 {
		t.Fatalf("Requests(user_organizations) = %d, want 20", n)
	}
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	s := newStandIn(t)
	s.expiresIn = 60
	c := s.client(t, Options{})
	clock := newFakeClock()
	c.token.now = clock.now
	ctx := context.Background()
	tok1, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clock.add(47 * time.Second) // before 60 - 60/5 = 48 s
	if tok, _ := c.Token(ctx); tok != tok1 {
		t.Fatalf("renewed too early: %s", tok)
	}
	clock.add(2 * time.Second)
	tok2, err := c.Token(ctx)
	if err != nil || tok2 == tok1 {
		t.Fatalf("not renewed at 49 s of 60: %q, %v", tok2, err)
	}

	// A failed renewal falls back to the still-valid token.
	s.mu.Lock()
	s.tokenFail = func(w http.ResponseWriter) bool { w.WriteHeader(http.StatusBadGateway); return true }
	s.mu.Unlock()
	clock.add(50 * time.Second)
	if tok, err := c.Token(ctx); err != nil || tok != tok2 {
		t.Fatalf("Token during failed renewal = %q, %v; want the old token", tok, err)
	}
	clock.add(20 * time.Second) // now expired
	if _, err := c.Token(ctx); err == nil {
		t.Fatal("expired token returned")
	}
}

func TestExpiredTokenRetriedOnce(t *testing.T) {
	s := newStandIn(t)
	c := s.client(t, Options{})
	s.setHandler(func(w http.ResponseWriter, r *http.Request, tok string) {
		if tok == "tok-1" { // Keycloak restarted or revoked it
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `[{"id":"o1","name":"Acme","alias":"acme","enabled":true,"attributes":{"tier":["gold"]}}]`)
	})
	orgs, err := c.UserOrganizations(context.Background(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	if len(orgs) != 1 || orgs[0].Alias != "acme" || orgs[0].Attributes["tier"][0] != "gold" {
		t.Fatalf("orgs = %+v", orgs)
	}
	if s.tokens.Load() != 2 || s.admin.Load() != 2 {
		t.Fatalf("tokens = %d, admin calls = %d; want 2 and 2", s.tokens.Load(), s.admin.Load())
	}

	// A 401 that persists is returned after one retry, not looped on.
	s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) { w.WriteHeader(http.StatusUnauthorized) })
	_, err = c.UserOrganizations(context.Background(), "u1")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("err = %v, want *StatusError 401", err)
	}
	if s.admin.Load() != 4 {
		t.Fatalf("admin calls = %d, want 4", s.admin.Load())
	}
}

func TestFaultsOpenTheBreaker(t *testing.T) {
	faults := map[string]func(w http.ResponseWriter, r *http.Request, _ string){
		"500": func(w http.ResponseWriter, r *http.Request, _ string) {
			w.WriteHeader(http.StatusInternalServerError)
		},
		"429": func(w http.ResponseWriter, r *http.Request, _ string) {
			w.WriteHeader(http.StatusTooManyRequests)
		},
		"timeout": func(w http.ResponseWriter, r *http.Request, _ string) {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		},
		"dropped connection": func(w http.ResponseWriter, r *http.Request, _ string) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		},
	}
	for name, fault := range faults {
		t.Run(name, func(t *testing.T) {
			s := newStandIn(t)
			c := s.client(t, Options{Timeout: 100 * time.Millisecond, FailureThreshold: 3, CoolOff: 200 * time.Millisecond})
			ctx := context.Background()
			if _, err := c.Token(ctx); err != nil { // token first, so only admin calls fail
				t.Fatal(err)
			}
			s.setHandler(fault)
			for i := range 3 {
				_, err := c.UserOrganizations(ctx, "u1")
				if err == nil || errors.Is(err, ErrCoolingOff) {
					t.Fatalf("call %d: err = %v, want the fault", i, err)
				}
				if name == "timeout" && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("call %d: err = %v, want context.DeadlineExceeded", i, err)
				}
			}
			before := s.admin.Load()
			start := time.Now()
			_, err := c.UserOrganizations(ctx, "u1")
			if !errors.Is(err, ErrCoolingOff) {
				t.Fatalf("after 3 failures: err = %v, want ErrCoolingOff", err)
			}
			if time.Since(start) > 20*time.Millisecond || s.admin.Load() != before || c.Healthy() {
				t.Fatal("open breaker still asked Keycloak")
			}

			// Keycloak comes back: after the cool-off one trial closes the breaker.
			s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) { fmt.Fprint(w, "[]") })
			time.Sleep(250 * time.Millisecond)
			if _, err := c.UserOrganizations(ctx, "u1"); err != nil {
				t.Fatalf("trial: %v", err)
			}
			if !c.Healthy() {
				t.Fatal("breaker still open after a good trial")
			}
		})
	}
}

func TestNotFoundDoesNotOpenTheBreaker(t *testing.T) {
	s := newStandIn(t)
	c := s.client(t, Options{FailureThreshold: 2})
	s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":"HTTP 404 Not Found"}`)
	})
	for range 5 {
		if _, err := c.UserOrganizations(context.Background(), "nobody"); !errors.Is(err, ErrUserNotFound) {
			t.Fatalf("err = %v, want ErrUserNotFound", err)
		}
	}
	if !c.Healthy() {
		t.Fatal("404s opened the breaker")
	}
}

func TestOrganizationsDisabled(t *testing.T) {
	s := newStandIn(t)
	c := s.client(t, Options{})
	s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errorMessage":"Organizations not enabled for this realm."}`)
	})
	if _, err := c.UserOrganizations(context.Background(), "u1"); !errors.Is(err, ErrOrganizationsDisabled) {
		t.Fatalf("err = %v, want ErrOrganizationsDisabled", err)
	}
}

func TestCallerCancelIsNotAFailure(t *testing.T) {
	s := newStandIn(t)
	c := s.client(t, Options{FailureThreshold: 1, Timeout: time.Second})
	if _, err := c.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) { <-r.Context().Done() })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.UserOrganizations(ctx, "u1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if !c.Healthy() {
		t.Fatal("the caller's own deadline opened the breaker")
	}
}

func TestTokenEndpointDownOpensTheBreaker(t *testing.T) {
	s := newStandIn(t)
	s.tokenFail = func(w http.ResponseWriter) bool { w.WriteHeader(http.StatusServiceUnavailable); return true }
	c := s.client(t, Options{FailureThreshold: 2, CoolOff: time.Minute})
	for range 2 {
		if _, err := c.UserOrganizations(context.Background(), "u1"); err == nil {
			t.Fatal("no error")
		}
	}
	if _, err := c.UserOrganizations(context.Background(), "u1"); !errors.Is(err, ErrCoolingOff) {
		t.Fatalf("err = %v, want ErrCoolingOff", err)
	}
	if n := s.tokens.Load(); n != 2 {
		t.Fatalf("token requests = %d, want 2", n)
	}
}

func TestAdminEventsQueryString(t *testing.T) {
	s := newStandIn(t)
	c := s.client(t, Options{})
	var got string
	s.setHandler(func(w http.ResponseWriter, r *http.Request, _ string) {
		got = r.URL.Path + "?" + r.URL.RawQuery
		fmt.Fprint(w, `[{"id":"e1","time":1700000000123,"realmId":"rid","operationType":"CREATE","resourceType":"ORGANIZATION_MEMBERSHIP",
			"resourcePath":"organizations/o1/members","details":{"username":"carol"},"authDetails":{"userId":"sa"}}]`)
	})
	from := time.UnixMilli(1_700_000_000_000)
	ev, err := c.AdminEvents(context.Background(), AdminEventQuery{
		ResourceTypes: []string{ResourceOrganizationMembership, ResourceUser}, From: from, First: 10, Max: 50, Ascending: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "/admin/realms/r/admin-events?dateFrom=1700000000000&direction=asc&first=10&max=50&resourceTypes=ORGANIZATION_MEMBERSHIP&resourceTypes=USER"
	if got != want {
		t.Fatalf("request = %s\nwant      %s", got, want)
	}
	if len(ev) != 1 || ev[0].Time.UnixMilli() != 1700000000123 || ev[0].Details["username"] != "carol" || ev[0].AuthUserID != "sa" {
		t.Fatalf("events = %+v", ev)
	}
}
