// Command story is the terminal demo behind `make demo` (scripts/demo.sh).
// It starts the real runner binary as APISIX starts it, plays APISIX with
// test/apisix, and tells the story of one user, Alice, whose organizations
// change in Keycloak while her gateway session stays the same, and whose
// sessions then end in Keycloak:
//
//  1. Alice logs in and reaches the app with organizations [acme];
//  2. an admin adds her to globex through Keycloak's admin API; her next
//     requests, with no new login, show [acme globex];
//  3. she is removed from acme: [globex]; the route only acme members pass
//     (conf/apisix.yaml's acme-only, `"require":{"org":"acme"}`), which
//     answered her 200 in steps 1 and 2, answers 403 access_rule_not_met,
//     still without a new login;
//  4. an admin signs her out (admin API): her browser, with the same session
//     headers, is sent to the route's logout path (302 /logout, a fresh
//     login) and an API call of the session gets 401 session_revoked;
//     Keycloak's logout token reaches the back-channel route, and the
//     admin-event watcher revokes every session of hers issued before;
//  5. she logs in again and reaches the app;
//  6. she logs out at Keycloak's end-session endpoint: the same 302 and 401,
//     from Keycloak's logout token alone;
//  7. she logs in once more;
//  8. her account is disabled: she is refused (401);
//  9. Alice and the apisix client are restored and the runner stopped, even
//     on failure or Ctrl-C.
//
// The story plays APISIX's HTTP side of the back-channel logout route too: it
// serves it on a loopback port, points the apisix client's
// backchannel.logout.url there for the run, and hands each logout token to
// the runner through the plugin runner protocol.
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
	"io"
	"net"
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

	// realmBackchannelURL is the apisix client's back-channel logout URL
	// in the realm file; the story points it at its own front for the run.
	realmBackchannelURL = "http://127.0.0.1:9080/identity/backchannel-logout"
	// logoutPath is the app route's openid-connect logout_path (its
	// default), where on_revoked sends a browser.
	logoutPath = "/logout"
	// acmePath is under conf/apisix.yaml's acme-only route (uri /acme/*).
	acmePath = "/acme/reports"
)

type story struct {
	kc      *keycloak
	runner  *apisix.Runner
	gw      *apisix.Gateway
	route   *apisix.Route
	acmeRt  *apisix.Route // the route only current members of acme pass
	front   *front
	sess    *session
	timeout time.Duration

	metricsAddr string // the runner's /metrics, where the watcher's revocations are counted
	clientUUID  string // the apisix client's internal id, once its back-channel URL is the front's

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
	fmt.Println("\nDone: three changes in Keycloak reached the app within seconds with no new login, and her removal from acme")
	fmt.Println("closed the acme-only route to her (403, same session); two ends of her session in Keycloak (an admin's")
	fmt.Println("sign-out, her own logout) sent her browser to a fresh login and refused her API calls at once; her disabled")
	fmt.Println("account was refused within seconds.")
}

func (s *story) run(ctx context.Context) error {
	if err := s.setUp(ctx); err != nil {
		return err
	}

	step(1, "Alice logs in")
	if err := s.login(ctx); err != nil {
		return fmt.Errorf("step 1: %w", err)
	}
	fmt.Printf("   password grant on client %q, scope %q, then the realm's userinfo endpoint\n", oidcClientID, scope)
	fmt.Printf("   her session now holds X-Userinfo with organization %s (frozen at login, as openid-connect keeps it)\n",
		claimSummary(sessionClaim(s.sess)))
	res, took, n, err := s.await(ctx, time.Now(), asBrowser, func(r *apisix.Result) bool { return r.Upstream && sameOrgs(r, "acme") })
	if err != nil {
		return fmt.Errorf("step 1: Alice did not reach the app with [acme]: %w", err)
	}
	fmt.Printf("   she reaches the app (%s, %s):\n", plural(n, "request"), ms(took))
	appView(res)
	if err := s.acmeOnly(ctx, time.Now(), http.StatusOK, "she is a member of acme"); err != nil {
		return fmt.Errorf("step 1: %w", err)
	}

	step(2, "An admin adds her to globex (Keycloak admin API, as MITx Online does)")
	fmt.Printf("   POST /admin/realms/%s/organizations/%s/members  body %q\n", s.kc.realm, s.globex, s.userID)
	if _, err := s.kc.addMember(ctx, s.globex, s.userID); err != nil {
		return fmt.Errorf("step 2: add to globex: %w", err)
	}
	changed := time.Now()
	fmt.Println("   no new login: the same session headers, polled every 100 ms")
	res, took, n, err = s.await(ctx, changed, asBrowser, func(r *apisix.Result) bool { return r.Upstream && sameOrgs(r, "acme", "globex") })
	if err != nil {
		return fmt.Errorf("step 2: globex did not reach the app: %w", err)
	}
	fmt.Printf("   the app sees globex %s after the admin call (%s):\n", ms(took), plural(n, "request"))
	appView(res)
	fmt.Printf("   (her session still says %s)\n", claimSummary(sessionClaim(s.sess)))
	if err := s.acmeOnly(ctx, time.Now(), http.StatusOK, "still a member of acme"); err != nil {
		return fmt.Errorf("step 2: %w", err)
	}

	step(3, "She is removed from acme")
	fmt.Printf("   DELETE /admin/realms/%s/organizations/%s/members/%s\n", s.kc.realm, s.acme, s.userID)
	if _, err := s.kc.removeMember(ctx, s.acme, s.userID); err != nil {
		return fmt.Errorf("step 3: remove from acme: %w", err)
	}
	changed = time.Now()
	res, took, n, err = s.await(ctx, changed, asBrowser, func(r *apisix.Result) bool { return r.Upstream && sameOrgs(r, "globex") })
	if err != nil {
		return fmt.Errorf("step 3: the removal from acme did not reach the app: %w", err)
	}
	fmt.Printf("   acme is gone for the app %s after the admin call (%s):\n", ms(took), plural(n, "request"))
	appView(res)
	if err := s.acmeOnly(ctx, changed, http.StatusForbidden, "no longer a member of acme, same session, no new login"); err != nil {
		return fmt.Errorf("step 3: the removal from acme did not close the acme-only route: %w", err)
	}

	step(4, "An admin signs her out (admin console: Users, alice, Sign out)")
	fmt.Printf("   POST /admin/realms/%s/users/%s/logout\n", s.kc.realm, s.userID)
	// Timed from before the call: Keycloak posts its logout tokens before it
	// answers, and that is part of the time.
	changed = time.Now()
	if err := s.kc.signOut(ctx, s.userID); err != nil {
		return fmt.Errorf("step 4: sign out: %w", err)
	}
	if err := s.sessionEnded(ctx, changed, time.Since(changed), "the admin call"); err != nil {
		return fmt.Errorf("step 4: %w", err)
	}
	took, err = s.awaitWatcher(ctx, changed, "sign_out")
	if err != nil {
		return fmt.Errorf("step 4: %w", err)
	}
	fmt.Printf("   the watcher read the admin event USER ACTION users/%s/logout %s after the call and revoked\n", s.userID, ms(took))
	fmt.Println("   every session of hers issued before it, on every runner sharing the Redis")

	step(5, "She logs in again")
	// A token's iat is in whole seconds and the sign-out revokes sessions
	// issued at or before its event time: a login in that same second would
	// count as before it (and be sent to log in again).
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(time.Now().Truncate(time.Second).Add(time.Second))):
	}
	if err := s.loginAgain(ctx, "globex"); err != nil {
		return fmt.Errorf("step 5: %w", err)
	}

	step(6, "She logs out in Keycloak (its end-session endpoint, as an application's logout does)")
	fmt.Printf("   POST /realms/%s/protocol/openid-connect/logout  client %q, her refresh token\n", s.kc.realm, oidcClientID)
	changed = time.Now()
	if err := s.kc.logout(ctx, oidcClientID, oidcClientSecret, s.sess); err != nil {
		return fmt.Errorf("step 6: %w", err)
	}
	if err := s.sessionEnded(ctx, changed, time.Since(changed), "the logout"); err != nil {
		return fmt.Errorf("step 6: %w", err)
	}
	fmt.Println("   (a logout is no admin event: Keycloak's logout token is the only signal)")

	step(7, "She logs in once more")
	if err := s.loginAgain(ctx, "globex"); err != nil {
		return fmt.Errorf("step 7: %w", err)
	}

	step(8, "Her account is disabled")
	fmt.Printf("   PUT /admin/realms/%s/users/%s  {\"enabled\":false}\n", s.kc.realm, s.userID)
	if err := s.kc.setEnabled(ctx, s.userID, false); err != nil {
		return fmt.Errorf("step 8: disable: %w", err)
	}
	changed = time.Now()
	res, took, n, err = s.await(ctx, changed, asAPI, func(r *apisix.Result) bool { return !r.Upstream && r.Status == http.StatusUnauthorized })
	if err != nil {
		return fmt.Errorf("step 8: the disabled account was not refused: %w", err)
	}
	fmt.Printf("   her API calls are refused %s after the admin call (%s): the app never sees them\n", ms(took), plural(n, "request"))
	fmt.Printf("     status  %d\n     reason  %s\n", res.Status, reasonOf(res))
	// Both come from the watcher's reading of the same admin event (USER
	// UPDATE, enabled false): it revokes her sessions, which userinfo
	// refuses, and drops her cached account, which orgsync's account check
	// then refuses. Whichever a request meets first names the reason.
	switch r := reasonOf(res); r {
	case "session_revoked":
		fmt.Println("   the watcher read the admin event (USER UPDATE, enabled false) and revoked every session of hers")
		fmt.Println("   (orgsync's account check would refuse her as account_disabled too; userinfo's revocation check runs first)")
	case "account_disabled":
		fmt.Println("   orgsync's account check found her disabled in Keycloak after the watcher read the admin event")
	default:
		return fmt.Errorf("step 8: refused with reason %q, want session_revoked or account_disabled", r)
	}
	if len(s.front.take()) == 0 {
		fmt.Println("   (Keycloak sent no logout token for it: the admin event is the only signal)")
	}
	return nil
}

// login starts a new session of Alice, as openid-connect does at a login.
func (s *story) login(ctx context.Context) error {
	sess, err := s.kc.login(ctx, oidcClientID, oidcClientSecret, user, password, scope)
	if err != nil {
		return err
	}
	s.sess = sess
	return nil
}

// loginAgain is a fresh login after her session ended: a new Keycloak
// session, which reaches the app with the organizations she has now.
func (s *story) loginAgain(ctx context.Context, orgs ...string) error {
	old := s.sess.sessionID()
	if err := s.login(ctx); err != nil {
		return err
	}
	fmt.Printf("   a new login: Keycloak session %s (the ended one was %s)\n", s.sess.sessionID(), old)
	res, took, n, err := s.await(ctx, time.Now(), asBrowser, func(r *apisix.Result) bool { return r.Upstream && sameOrgs(r, orgs...) })
	if err != nil {
		return fmt.Errorf("the new session did not reach the app with %v: %w", orgs, err)
	}
	fmt.Printf("   she reaches the app again (%s, %s):\n", plural(n, "request"), ms(took))
	appView(res)
	return nil
}

// sessionEnded shows Alice's session, ended in Keycloak at since, refused at
// the gateway: her browser, with the same session headers, is sent to the
// route's logout path (openid-connect then drops its session cookie and
// sends her to Keycloak's login), and an API call of the same session gets
// 401. It also tells what Keycloak posted to the back-channel route.
// The call to Keycloak, sent at since, took call.
func (s *story) sessionEnded(ctx context.Context, since time.Time, call time.Duration, what string) error {
	got := s.front.take()
	if len(got) == 0 {
		fmt.Println("   (no logout token reached the back-channel route)")
	}
	for _, d := range got {
		whose := "another session"
		if d.sub == s.userID {
			whose = "her session " + d.sid
		}
		fmt.Printf("   Keycloak posted a logout token for %s to the back-channel route before it answered;\n", whose)
		fmt.Printf("   the runner verified it, revoked the session fleet-wide and answered %d\n", d.status)
		if d.status != http.StatusOK {
			return fmt.Errorf("the back-channel route answered %d: %s", d.status, d.body)
		}
	}
	res, took, n, err := s.await(ctx, since, asBrowser, func(r *apisix.Result) bool { return !r.Upstream && r.Status == http.StatusFound })
	if err != nil {
		return fmt.Errorf("her browser was not sent to a fresh login: %w", err)
	}
	if loc := res.ResponseHeader.Get("Location"); loc != logoutPath {
		return fmt.Errorf("her browser was sent to %q, want %q", loc, logoutPath)
	}
	fmt.Printf("   her browser (Accept: text/html), same session headers, %s after %s was sent (which took %s; %s):\n",
		ms(took), what, ms(call), plural(n, "request"))
	fmt.Printf("     status    %d\n     Location  %s  (openid-connect's logout_path: the APISIX session is destroyed, then\n", res.Status, logoutPath)
	fmt.Println("               Keycloak's logout and login pages: a fresh login, no loop on a dead session)")
	res, err = s.request(ctx, asAPI)
	if err != nil {
		return err
	}
	if res.Upstream || res.Status != http.StatusUnauthorized || reasonOf(res) != "session_revoked" {
		return fmt.Errorf("an API call of the ended session got %s, want 401 session_revoked", describe(res))
	}
	fmt.Printf("   an API call of the same session (Accept: application/json): %d %s\n", res.Status, reasonOf(res))
	return nil
}

// awaitWatcher waits until the runner's admin-event watcher has counted a
// revocation for cause, and returns the time since since.
func (s *story) awaitWatcher(ctx context.Context, since time.Time, cause string) (time.Duration, error) {
	for {
		n, err := watcherRevocations(ctx, s.metricsAddr, cause)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			return time.Since(since), nil
		}
		if time.Since(since) > s.timeout {
			return 0, fmt.Errorf("the watcher revoked nothing for %s within %s", cause, s.timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
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

	s.metricsAddr, err = freeAddr()
	if err != nil {
		return fmt.Errorf("set-up: a port for the runner's metrics: %w", err)
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
		"RUNNER_METRICS_ADDR=" + s.metricsAddr,
	}
	s.runner, err = apisix.StartRunner(apisix.RunnerOptions{Binary: s.runnerBinary, Args: []string{"run"}, Env: env,
		StopTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("set-up: start the runner: %w", err)
	}
	s.gw = apisix.NewGateway(s.runner.Socket())
	userinfoConf := fmt.Sprintf(`{"issuer":%q,"audience":%q,"assertion":{"audience":"demo-app"},"on_revoked":{"redirect":%q}}`,
		s.kc.issuer(), oidcClientID, logoutPath)
	orgsyncConf := `{"fresh_ttl":"30s","stale_ttl":"10m"}`
	s.route = &apisix.Route{ID: "demo-app", Conf: []apisix.PluginConf{
		{Name: "userinfo", Value: userinfoConf},
		{Name: "orgsync", Value: orgsyncConf},
	}}
	// conf/apisix.yaml's acme-only route: the same chain with a rule.
	acmeConf := `{"fresh_ttl":"30s","stale_ttl":"10m","require":{"org":"acme"}}`
	s.acmeRt = &apisix.Route{ID: "acme-only", Conf: []apisix.PluginConf{
		{Name: "userinfo", Value: userinfoConf},
		{Name: "orgsync", Value: acmeConf},
	}}
	logoutConf := fmt.Sprintf(`{"backchannel_logout":true,"issuer":%q,"audience":%q}`, s.kc.issuer(), oidcClientID)
	s.front, err = startFront(s.gw, &apisix.Route{ID: "backchannel-logout", Conf: []apisix.PluginConf{
		{Name: "userinfo", Value: logoutConf},
	}})
	if err != nil {
		return fmt.Errorf("set-up: the back-channel front: %w", err)
	}
	current, id, err := s.kc.backchannelURL(ctx, oidcClientID)
	if err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	if current != realmBackchannelURL {
		fmt.Printf("(the %s client's back-channel logout URL was left at %q by an earlier run: it is put back at the end)\n",
			oidcClientID, current)
	}
	if err := s.kc.setBackchannelURL(ctx, id, s.front.url()); err != nil {
		return fmt.Errorf("set-up: point the %s client's back-channel logout at the front: %w", oidcClientID, err)
	}
	s.clientUUID = id

	fmt.Println("The cast:")
	fmt.Printf("  Keycloak  %s, realm %s; Alice is in acme\n", s.kc.base, s.kc.realm)
	fmt.Printf("  runner    %s (pid %d), socket %s\n", s.runnerBinary, s.runner.Pid(), s.runner.Socket())
	fmt.Printf("            Redis %s, Keycloak admin events polled every %s\n", s.redisURL, s.eventInterval)
	fmt.Println("  APISIX    played by test/apisix; the app route runs ext-plugin-post-req with")
	fmt.Printf("              userinfo %s\n", userinfoConf)
	fmt.Printf("              orgsync  %s\n", orgsyncConf)
	fmt.Printf("            the route %s only current members of acme pass, with the same userinfo and\n", acmePath)
	fmt.Printf("              orgsync  %s\n", acmeConf)
	fmt.Printf("            and the back-channel logout route %s, which Keycloak's logout tokens reach\n", backchannelPath)
	fmt.Printf("            (the %s client's backchannel.logout.url points at %s for the run) with\n", oidcClientID, s.front.url())
	fmt.Printf("              userinfo %s\n", logoutConf)
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
		step(9, "Cleanup")
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
	if s.clientUUID != "" {
		if err := s.kc.setBackchannelURL(ctx, s.clientUUID, realmBackchannelURL); err != nil {
			errs = append(errs, fmt.Errorf("restore the %s client's back-channel logout URL: %w", oidcClientID, err))
		} else {
			fmt.Printf("   the %s client's back-channel logout URL is the realm file's again\n", oidcClientID)
		}
	}
	if s.front != nil {
		s.front.close()
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

// client is who sends Alice's request: her browser navigating to the app,
// or a script of the app calling its API with her session.
type client int

const (
	asBrowser client = iota
	asAPI
)

// acmeOnly waits until Alice's API call of the route only acme members
// pass answers want (200 reaching the app, or 403 access_rule_not_met), and
// prints the answer and the time since since.
func (s *story) acmeOnly(ctx context.Context, since time.Time, want int, why string) error {
	res, took, n, err := s.awaitAt(ctx, s.acmeRt, acmePath, since, asAPI, func(r *apisix.Result) bool {
		if want == http.StatusOK {
			return r.Upstream && r.Status == http.StatusOK
		}
		return !r.Upstream && r.Status == want && reasonOf(r) == "access_rule_not_met"
	})
	if err != nil {
		return fmt.Errorf("GET %s did not answer %d: %w", acmePath, want, err)
	}
	if want == http.StatusOK {
		fmt.Printf("   GET %s (acme members only): %d, reaches the app (%s)\n", acmePath, res.Status, why)
		return nil
	}
	fmt.Printf("   GET %s (acme members only): %d %s, %s after the admin call (%s; %s)\n", acmePath, res.Status,
		strings.TrimSpace(string(res.Body)), ms(took), plural(n, "request"), why)
	return nil
}

// request sends Alice's request to the app route once, with her session's
// headers as openid-connect forwards them.
func (s *story) request(ctx context.Context, as client) (*apisix.Result, error) {
	return s.requestAt(ctx, s.route, "/app", as)
}

func (s *story) requestAt(ctx context.Context, route *apisix.Route, path string, as client) (*apisix.Result, error) {
	h := http.Header{
		"Host":           {"app.example.org"},
		"X-Userinfo":     {s.sess.userinfoHeader()},
		"X-Access-Token": {s.sess.accessToken},
	}
	if as == asAPI {
		h.Set("Accept", "application/json")
	} else {
		h.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
		h.Set("Sec-Fetch-Mode", "navigate")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.gw.Do(ctx, route, &apisix.Request{Method: http.MethodGet, Path: path, Header: h, SrcIP: "192.0.2.10"})
}

// await sends Alice's request every 100 ms until done holds, and returns the
// result, the time since `since` and the number of requests sent.
func (s *story) await(ctx context.Context, since time.Time, as client, done func(*apisix.Result) bool) (*apisix.Result, time.Duration, int, error) {
	return s.awaitAt(ctx, s.route, "/app", since, as, done)
}

func (s *story) awaitAt(ctx context.Context, route *apisix.Route, path string, since time.Time, as client,
	done func(*apisix.Result) bool) (*apisix.Result, time.Duration, int, error) {
	var last *apisix.Result
	for n := 1; ; n++ {
		res, err := s.requestAt(ctx, route, path, as)
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

// freeAddr is a loopback address with a port free now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// watcherRevocations reads from the runner's /metrics how many revocations
// the admin-event watcher made for cause.
func watcherRevocations(ctx context.Context, addr, cause string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("runner metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("runner metrics: %w", err)
	}
	prefix := `apisix_identity_orgsync_event_watcher_revocations_total{cause="` + cause + `"} `
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			var n float64
			if _, err := fmt.Sscan(v, &n); err != nil {
				return 0, fmt.Errorf("runner metrics: %q: %w", line, err)
			}
			return n, nil
		}
	}
	return 0, nil
}
