// Command story is the terminal demo behind `make demo` (scripts/demo.sh).
// It starts the real runner binary as APISIX starts it, plays APISIX with
// test/apisix, and tells the story of one user, Alice, whose organizations
// change in Keycloak while her gateway session stays the same:
//
//  1. Alice logs in and reaches the app with organizations [acme];
//  2. an admin adds her to globex through Keycloak's admin API; her next
//     requests, with no new login, show [acme globex];
//  3. she is removed from acme: [globex];
//  4. her account is disabled: she is refused (401 account_disabled);
//  5. Alice is restored and the runner stopped, even on failure or Ctrl-C.
//
// Each step must happen within -timeout (10 s) or the command exits 1.
//
//	story -runner .work/bin/go-runner -keycloak http://127.0.0.1:8080 -redis redis://127.0.0.1:6379/0
//
// -keycloak and -redis default to KEYCLOAK_TEST_URL and REDIS_TEST_URL, the
// names the env files of scripts/keycloak.sh and scripts/redis.sh use. The
// realm is test/keycloak/realm-test.json.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
)

// Values of test/keycloak/realm-test.json.
const (
	oidcClientID     = "apisix"
	oidcClientSecret = "apisix-test-secret"
	saClientID       = "identity-runner"
	saClientSecret   = "identity-runner-test-secret"
	scope            = "openid profile email organization:*"
	user             = "alice"
	password         = "alice-password"
)

type story struct {
	kc      *keycloak
	runner  *apisix.Runner
	gw      *apisix.Gateway
	route   *apisix.Route
	sess    *session
	timeout time.Duration

	userID        string
	acme, globex  string // organization ids
	runnerBinary  string
	redisURL      string
	eventInterval string
}

func main() {
	runnerBinary := flag.String("runner", "", "the go-runner binary (required)")
	keycloakURL := flag.String("keycloak", os.Getenv("KEYCLOAK_TEST_URL"), "Keycloak base URL")
	redisURL := flag.String("redis", os.Getenv("REDIS_TEST_URL"), "Redis URL for the runner's shared cache")
	realm := flag.String("realm", "olapps", "the realm of test/keycloak/realm-test.json")
	timeout := flag.Duration("timeout", 10*time.Second, "how long each step may take")
	flag.Parse()
	if *runnerBinary == "" || *keycloakURL == "" || *redisURL == "" {
		fmt.Fprintln(os.Stderr, "story: -runner, -keycloak (or KEYCLOAK_TEST_URL) and -redis (or REDIS_TEST_URL) are required")
		os.Exit(2)
	}

	// The first Ctrl-C (or SIGTERM) stops the story; the cleanup still runs,
	// and later signals do not cut it short.
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		first := time.Now()
		fmt.Printf("\n!! %v: stopping the story, cleaning up\n", sig)
		cancel()
		for range sigs {
			// Ctrl-C reaches both this process and scripts/demo.sh, which
			// passes it on: say nothing about that echo.
			if time.Since(first) > time.Second {
				fmt.Println("!! still cleaning up, one moment")
			}
		}
	}()

	s := &story{
		kc:            newKeycloak(*keycloakURL, *realm),
		timeout:       *timeout,
		runnerBinary:  *runnerBinary,
		redisURL:      *redisURL,
		eventInterval: "1s",
	}
	err := s.run(ctx)
	interrupted := ctx.Err() != nil && err != nil
	cleanupErr := s.cleanup(err == nil)
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "\nDEMO INTERRUPTED")
		if cleanupErr != nil {
			fmt.Fprintf(os.Stderr, "and the cleanup failed: %v\n", cleanupErr)
		}
		os.Exit(1)
	case err != nil:
		if s.runner != nil {
			fmt.Fprintf(os.Stderr, "\n--- runner output ---\n%s--- end of runner output ---\n", s.runner.Output())
		}
		fmt.Fprintf(os.Stderr, "\nDEMO FAILED: %v\n", err)
		if cleanupErr != nil {
			fmt.Fprintf(os.Stderr, "and the cleanup failed too: %v\n", cleanupErr)
		}
		os.Exit(1)
	case cleanupErr != nil:
		fmt.Fprintf(os.Stderr, "\nDEMO FAILED in the cleanup: %v\n", cleanupErr)
		os.Exit(1)
	}
	fmt.Println("\nDone: one login, three changes in Keycloak, and the app saw each of them within seconds.")
}

func (s *story) run(ctx context.Context) error {
	if err := s.setUp(ctx); err != nil {
		return err
	}

	step(1, "Alice logs in")
	sess, err := s.kc.login(ctx, oidcClientID, oidcClientSecret, user, password, scope)
	if err != nil {
		return fmt.Errorf("step 1: %w", err)
	}
	s.sess = sess
	fmt.Printf("   password grant on client %q, scope %q, then the realm's userinfo endpoint\n", oidcClientID, scope)
	fmt.Printf("   her session now holds X-Userinfo with organization %s (frozen at login, as openid-connect keeps it)\n",
		claimSummary(sessionClaim(sess)))
	res, took, n, err := s.await(ctx, time.Now(), func(r *apisix.Result) bool { return r.Upstream && sameOrgs(r, "acme") })
	if err != nil {
		return fmt.Errorf("step 1: Alice did not reach the app with [acme]: %w", err)
	}
	fmt.Printf("   she reaches the app (%s, %s):\n", plural(n, "request"), ms(took))
	appView(res)

	step(2, "An admin adds her to globex (Keycloak admin API, as MITx Online does)")
	fmt.Printf("   POST /admin/realms/%s/organizations/%s/members  body %q\n", s.kc.realm, s.globex, s.userID)
	if _, err := s.kc.addMember(ctx, s.globex, s.userID); err != nil {
		return fmt.Errorf("step 2: add to globex: %w", err)
	}
	changed := time.Now()
	fmt.Println("   no new login: the same session headers, polled every 100 ms")
	res, took, n, err = s.await(ctx, changed, func(r *apisix.Result) bool { return r.Upstream && sameOrgs(r, "acme", "globex") })
	if err != nil {
		return fmt.Errorf("step 2: globex did not reach the app: %w", err)
	}
	fmt.Printf("   the app sees globex %s after the admin call (%s):\n", ms(took), plural(n, "request"))
	appView(res)
	fmt.Printf("   (her session still says %s)\n", claimSummary(sessionClaim(s.sess)))

	step(3, "She is removed from acme")
	fmt.Printf("   DELETE /admin/realms/%s/organizations/%s/members/%s\n", s.kc.realm, s.acme, s.userID)
	if _, err := s.kc.removeMember(ctx, s.acme, s.userID); err != nil {
		return fmt.Errorf("step 3: remove from acme: %w", err)
	}
	changed = time.Now()
	res, took, n, err = s.await(ctx, changed, func(r *apisix.Result) bool { return r.Upstream && sameOrgs(r, "globex") })
	if err != nil {
		return fmt.Errorf("step 3: the removal from acme did not reach the app: %w", err)
	}
	fmt.Printf("   acme is gone for the app %s after the admin call (%s):\n", ms(took), plural(n, "request"))
	appView(res)

	step(4, "Her account is disabled")
	fmt.Printf("   PUT /admin/realms/%s/users/%s  {\"enabled\":false}\n", s.kc.realm, s.userID)
	if err := s.kc.setEnabled(ctx, s.userID, false); err != nil {
		return fmt.Errorf("step 4: disable: %w", err)
	}
	changed = time.Now()
	res, took, n, err = s.await(ctx, changed, func(r *apisix.Result) bool { return !r.Upstream && r.Status == http.StatusUnauthorized })
	if err != nil {
		return fmt.Errorf("step 4: the disabled account was not refused: %w", err)
	}
	fmt.Printf("   refused %s after the admin call (%s): the app never sees the request\n", ms(took), plural(n, "request"))
	fmt.Printf("     status  %d\n     reason  %s\n", res.Status, reasonOf(res))
	if r := reasonOf(res); r != "account_disabled" {
		return fmt.Errorf("step 4: refused with reason %q, want account_disabled", r)
	}
	return nil
}

// setUp finds Alice and the organizations, puts Alice back in the realm's
// starting state if an earlier run was killed before its cleanup, and starts
// the runner.
func (s *story) setUp(ctx context.Context) error {
	var err error
	if s.userID, err = s.kc.userID(ctx, user); err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	orgs, err := s.kc.orgIDs(ctx)
	if err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	s.acme, s.globex = orgs["acme"], orgs["globex"]
	if s.acme == "" || s.globex == "" {
		return fmt.Errorf("set-up: the realm has no acme or globex organization (is it test/keycloak/realm-test.json?)")
	}
	enabled, aliases, err := s.kc.state(ctx, s.userID)
	if err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	if !enabled || !slices.Equal(aliases, []string{"acme"}) {
		fmt.Printf("(alice was left enabled=%v in %v by an earlier run: restoring her first)\n", enabled, aliases)
		if err := s.restore(ctx); err != nil {
			return fmt.Errorf("set-up: %w", err)
		}
	}

	env := []string{
		"KEYCLOAK_URL=" + s.kc.base,
		"KEYCLOAK_REALM=" + s.kc.realm,
		"KEYCLOAK_CLIENT_ID=" + saClientID,
		"KEYCLOAK_CLIENT_SECRET=" + saClientSecret,
		"KEYCLOAK_EVENTS_INTERVAL=" + s.eventInterval,
		"REDIS_URL=" + s.redisURL,
		"REDIS_VALUE_SECRET=" + randomSecret(),
		"RUNNER_LOG_LEVEL=warn",
	}
	s.runner, err = apisix.StartRunner(apisix.RunnerOptions{Binary: s.runnerBinary, Args: []string{"run"}, Env: env,
		StopTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("set-up: start the runner: %w", err)
	}
	s.gw = apisix.NewGateway(s.runner.Socket())
	userinfoConf := fmt.Sprintf(`{"issuer":%q,"audience":%q,"assertion":{"audience":"demo-app"}}`, s.kc.issuer(), oidcClientID)
	orgsyncConf := `{"fresh_ttl":"30s","stale_ttl":"10m"}`
	s.route = &apisix.Route{ID: "demo-app", Conf: []apisix.PluginConf{
		{Name: "userinfo", Value: userinfoConf},
		{Name: "orgsync", Value: orgsyncConf},
	}}

	fmt.Println("The cast:")
	fmt.Printf("  Keycloak  %s, realm %s; Alice is in acme\n", s.kc.base, s.kc.realm)
	fmt.Printf("  runner    %s (pid %d), socket %s\n", s.runnerBinary, s.runner.Pid(), s.runner.Socket())
	fmt.Printf("            Redis %s, Keycloak admin events polled every %s\n", s.redisURL, s.eventInterval)
	fmt.Println("  APISIX    played by test/apisix; the app route runs ext-plugin-post-req with")
	fmt.Printf("              userinfo %s\n", userinfoConf)
	fmt.Printf("              orgsync  %s\n", orgsyncConf)
	fmt.Println("  app       shown as what it receives from the gateway")
	return nil
}

// restore puts Alice back as the realm file has her: enabled, in acme only.
func (s *story) restore(ctx context.Context) error {
	if err := s.kc.setEnabled(ctx, s.userID, true); err != nil {
		return fmt.Errorf("restore: enable alice: %w", err)
	}
	if _, err := s.kc.addMember(ctx, s.acme, s.userID); err != nil {
		return fmt.Errorf("restore: add alice to acme: %w", err)
	}
	if _, err := s.kc.removeMember(ctx, s.globex, s.userID); err != nil {
		return fmt.Errorf("restore: remove alice from globex: %w", err)
	}
	enabled, aliases, err := s.kc.state(ctx, s.userID)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if !enabled || !slices.Equal(aliases, []string{"acme"}) {
		return fmt.Errorf("restore: alice is enabled=%v in %v, want enabled in [acme]", enabled, aliases)
	}
	return nil
}

// cleanup restores Alice and stops the runner. It runs after success,
// failure and interruption alike, with its own deadline.
func (s *story) cleanup(ok bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ok {
		step(5, "Cleanup")
	} else {
		fmt.Println("\n== Cleanup")
	}
	var errs []error
	if s.userID != "" && s.acme != "" && s.globex != "" {
		if err := s.restore(ctx); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Println("   alice restored: enabled, in acme, not in globex")
		}
	}
	if s.runner != nil {
		s.gw.Close()
		if err := s.runner.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop the runner: %w", err))
		} else {
			fmt.Println("   runner stopped")
		}
		if out := s.runner.Output(); strings.Contains(out, "panic") {
			errs = append(errs, fmt.Errorf("the runner panicked:\n%s", out))
		}
	}
	return errors.Join(errs...)
}

// await sends Alice's request every 100 ms until done holds, and returns the
// result, the time since `since` and the number of requests sent.
func (s *story) await(ctx context.Context, since time.Time, done func(*apisix.Result) bool) (*apisix.Result, time.Duration, int, error) {
	var last *apisix.Result
	for n := 1; ; n++ {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := s.gw.Do(callCtx, s.route, &apisix.Request{
			Method: http.MethodGet,
			Path:   "/app",
			Header: http.Header{
				"Host":           {"app.example.org"},
				"X-Userinfo":     {s.sess.userinfoHeader()},
				"X-Access-Token": {s.sess.accessToken},
			},
			SrcIP: "192.0.2.10",
		})
		cancel()
		if err != nil {
			return nil, 0, n, err
		}
		last = res
		if done(res) {
			return res, time.Since(since), n, nil
		}
		select {
		case <-s.runner.Exited():
			return nil, 0, n, fmt.Errorf("the runner exited (last answer: %s)", describe(last))
		default:
		}
		if time.Since(since) > s.timeout {
			return nil, 0, n, fmt.Errorf("not within %s (last answer: %s)", s.timeout, describe(last))
		}
		select {
		case <-ctx.Done():
			return nil, 0, n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func step(n int, title string) {
	fmt.Printf("\n== %d. %s\n", n, title)
}

// appView prints the identity headers the app gets.
func appView(res *apisix.Result) {
	h := res.UpstreamHeader
	fmt.Printf("     X-User-Orgs                      %s\n", h.Get("X-User-Orgs"))
	fmt.Printf("     X-Userinfo, organization claim   %s\n", claimJSON(upstreamClaim(res)))
	fmt.Printf("     X-User-Orgs-Source               %s\n", h.Get("X-User-Orgs-Source"))
}

func sameOrgs(res *apisix.Result, want ...string) bool {
	v := res.UpstreamHeader.Get("X-User-Orgs")
	got := []string{}
	if v != "" {
		got = strings.Split(v, ",")
	}
	sort.Strings(got)
	return slices.Equal(got, want)
}

func describe(res *apisix.Result) string {
	if res == nil {
		return "none"
	}
	if !res.Upstream {
		d := fmt.Sprintf("status %d", res.Status)
		if r := reasonOf(res); r != "" {
			d += ", reason " + r
		}
		if res.Err != nil {
			d += ", " + res.Err.Error()
		}
		return d
	}
	h := res.UpstreamHeader
	return fmt.Sprintf("status %d, X-User-Orgs %q, X-User-Orgs-Source %q", res.Status, h.Get("X-User-Orgs"), h.Get("X-User-Orgs-Source"))
}

func reasonOf(res *apisix.Result) string {
	var body map[string]any
	if json.Unmarshal(res.Body, &body) != nil {
		return ""
	}
	r, _ := body["reason"].(string)
	return r
}

func sessionClaim(s *session) any {
	var m map[string]any
	_ = json.Unmarshal(s.userinfo, &m)
	return m["organization"]
}

func upstreamClaim(res *apisix.Result) any {
	b, err := base64.StdEncoding.DecodeString(res.UpstreamHeader.Get("X-Userinfo"))
	if err != nil {
		return "(not base64: " + err.Error() + ")"
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return "(not JSON: " + err.Error() + ")"
	}
	return m["organization"]
}

func claimJSON(v any) string {
	if v == nil {
		return "(none)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// claimSummary gives the aliases of an organization claim in either shape:
// a list of aliases, or a map keyed by alias.
func claimSummary(v any) string {
	var aliases []string
	switch c := v.(type) {
	case []any:
		for _, a := range c {
			aliases = append(aliases, fmt.Sprint(a))
		}
	case map[string]any:
		for a := range c {
			aliases = append(aliases, a)
		}
	}
	sort.Strings(aliases)
	return "[" + strings.Join(aliases, " ") + "]"
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// randomSecret is a REDIS_VALUE_SECRET for the demo's one runner: nothing else reads its values.
func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
