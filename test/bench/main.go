// Command bench drives the real runner binary over its unix socket the way
// APISIX does and measures each plugin chain against the no-op chain of the
// same runner and round (`make bench-e2e`; docs/benchmarks.md describes the
// method). It needs the test Keycloak (scripts/keycloak.sh start; the Makefile
// sources .work/keycloak.env) and redis-server on the PATH; it starts its own
// Redis, runners, JWKS endpoint and counting proxy, creates its users in the
// test realm and deletes them at the end.
//
//	go run ./test/bench [-quick] [-out FILE]
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick          bool
	rounds         int
	dur            time.Duration
	users          int
	sweep          []int
	sweepCalls     int
	fleetTTL       time.Duration
	fleetConns     int
	changes        int
	offTTL         time.Duration
	out            string
	skip           map[string]bool
	rssBudgetMB    int64
	localOffEnv    string
	sweepMax       time.Duration
	profile        time.Duration
	revocations    int
	only           *regexp.Regexp // variants run (their no-ops too); nil: all
	profileConns   int
	profileVariant *regexp.Regexp // the variant profiled; nil: userinfo + orgsync, local hit
}

func main() {
	var o options
	var sweep, skip string
	flag.BoolVar(&o.quick, "quick", false, "smoke run, bounded to about 30 s: 2 short rounds, small sweep, few users and changes")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds of the variants (each round runs every variant, order rotated)")
	flag.DurationVar(&o.dur, "dur", 1500*time.Millisecond, "timed length of each variant in each round")
	flag.IntVar(&o.users, "users", 1000, "real Keycloak users created for the cold, fleet and propagation scenarios")
	flag.StringVar(&sweep, "sweep", "1,10000,1000000", "working-set sizes (distinct users) of the sweep")
	flag.IntVar(&o.sweepCalls, "sweep-calls", 20000, "calls per sweep size at least (a size bigger than that is run once per user)")
	flag.DurationVar(&o.fleetTTL, "fleet-fresh-ttl", 10*time.Second, "orgsync fresh_ttl of the fleet scenario (run for 3 of them)")
	flag.IntVar(&o.fleetConns, "fleet-clients", 200, "concurrent clients of the fleet scenario")
	flag.IntVar(&o.changes, "changes", 20, "membership changes per propagation run")
	flag.DurationVar(&o.offTTL, "watcher-off-fresh-ttl", 5*time.Second, "orgsync fresh_ttl of the propagation run with the watcher off")
	flag.StringVar(&o.out, "out", ".work/bench-e2e.md", "Markdown report written here (also printed)")
	flag.StringVar(&skip, "skip", "", "scenarios to leave out: rounds,sweep,fleet,propagation")
	flag.Int64Var(&o.rssBudgetMB, "rss-budget-mb", 256, "resident memory budget of the sweep")
	flag.StringVar(&o.localOffEnv, "local-off-env", "CACHE_LOCAL_MAX_ENTRIES=0", "the runner setting that turns the in-process cache tier off (Redis-hit variant)")
	flag.DurationVar(&o.sweepMax, "sweep-max", 15*time.Minute, "time cap of each sweep size (a size not finished is reported with the users it reached)")
	flag.DurationVar(&o.profile, "profile", 5*time.Second, "CPU profile of the runner on the userinfo + orgsync hit path at 16 connections (0: none)")
	var only string
	flag.StringVar(&only, "only", "", "run only the variants whose name matches this regular expression (and their no-ops): for working on one figure, not for the report")
	flag.IntVar(&o.profileConns, "profile-conns", 16, "connections of the CPU profile's run")
	var profileVariant string
	flag.StringVar(&profileVariant, "profile-variant", "", "profile the first variant whose name matches this regular expression (default: userinfo + orgsync, local hit)")
	flag.IntVar(&o.revocations, "revocations", revocationsHeld, "revocations of other sessions the revocation variant's runner holds")
	var floorURL string
	var floorConns int
	flag.StringVar(&floorURL, floorFlag, "", "internal: run as the Redis GET floor's child against this Redis URL")
	flag.IntVar(&floorConns, "floor-conns", 1, "internal: the Redis GET floor child's connections")
	flag.Parse()
	if floorURL != "" {
		gets, cpu, err := runRedisFloor(floorURL, floorConns, o.dur)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-e2e redis floor:", err)
			os.Exit(1)
		}
		fmt.Printf("%d %d\n", gets, cpu.Nanoseconds())
		return
	}
	if o.quick {
		o.revocations = min(o.revocations, revocationsQuick)
		o.rounds, o.dur, o.users, sweep, o.sweepCalls = 2, 200*time.Millisecond, 12, "1,1000", 2000
		o.fleetTTL, o.fleetConns, o.changes, o.offTTL = time.Second, 24, 2, time.Second
		o.profile = 0
	}
	for _, s := range strings.Split(sweep, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
			o.sweep = append(o.sweep, n)
		}
	}
	o.profileVariant = regexpFlag("profile-variant", profileVariant)
	o.only = regexpFlag("only", only)
	o.skip = map[string]bool{}
	for _, s := range strings.Split(skip, ",") {
		o.skip[strings.TrimSpace(s)] = true
	}
	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

// env is the setup every scenario shares.
type env struct {
	o       *options
	root    string
	dir     string
	binary  string
	p256    string
	ed25519 string
	redis   *redisServer
	is      *issuer
	proxy   *countingProxy
	kc      *keycloakSettings
	admin   *admin
	login   struct{ username, password string }
	bulk    []bulkUser
	acmeID  string
	report  *report
}

type bulkUser struct {
	id, username string
	ident        *identity
}

// webhookSecret signs the invalidations the benchmark posts (the route wants
// at least 32 characters); a new one each run.
var webhookSecret = randomHex(64)

// redisValueSecret seals cached values in Redis; the seeder shares it with the runners.
var redisValueSecret = randomHex(64)

// userPrefix names every user the benchmark creates, so a run interrupted
// before its cleanup is cleaned by the next.
const userPrefix = "bench-e2e-"

func run(o *options) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{o: o, report: newReport()}
	if e.root, err = repoRoot(); err != nil {
		return err
	}
	if e.kc, err = keycloakFromEnv(envWithFile(e.root)); err != nil {
		return err
	}
	if e.dir, err = os.MkdirTemp("", "bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.dir)
	start := time.Now()
	logf("building the runner")
	e.binary = filepath.Join(e.dir, "go-runner")
	build := exec.Command("go", "build", "-o", e.binary, "./cmd/go-runner")
	build.Dir = e.root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/go-runner: %v\n%s", err, out)
	}
	if e.p256, e.ed25519, err = writeKeys(e.dir); err != nil {
		return err
	}
	if e.redis, err = startRedis(e.dir); err != nil {
		return err
	}
	defer e.redis.stop()
	if e.is, err = startIssuer(e.kc.Issuer); err != nil {
		return err
	}
	defer e.is.close()
	if e.proxy, err = startCountingProxy(e.kc.URL); err != nil {
		return err
	}
	defer e.proxy.close()
	e.admin = newAdmin(e.kc)
	if e.acmeID, err = e.admin.orgID(ctx, "acme"); err != nil {
		return err
	}
	if err := e.createUsers(ctx); err != nil {
		e.deleteUsers()
		return err
	}
	defer e.deleteUsers()
	e.report.machine(e.root)

	var failed []string
	type scenario struct {
		name string
		fn   func(context.Context) error
	}
	for _, s := range []scenario{{"rounds", e.rounds}, {"fleet", e.fleet}, {"propagation", e.propagation}, {"sweep", e.sweepScenario}} {
		if o.skip[s.name] {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t := time.Now()
		logf("scenario %s", s.name)
		if err := s.fn(ctx); err != nil {
			// The other scenarios still run and report; the run fails at the end.
			logf("scenario %s FAILED: %v", s.name, err)
			e.report.note(fmt.Sprintf("Scenario %s failed: %v", s.name, err))
			failed = append(failed, s.name)
			continue
		}
		logf("scenario %s done in %s", s.name, time.Since(t).Round(time.Second))
	}
	e.report.footer(time.Since(start), o)
	text := e.report.String()
	fmt.Println(text)
	if o.out != "" {
		path := o.out
		if !filepath.IsAbs(path) {
			path = filepath.Join(e.root, path)
		}
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return err
		}
		logf("report written to %s", path)
	}
	if len(failed) > 0 {
		return fmt.Errorf("scenarios failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s bench-e2e: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the repository (no go.mod found)")
		}
		dir = parent
	}
}

// writeKeys writes a P-256 and an Ed25519 assertion signing key (PKCS#8 PEM),
// for RUNNER_SIGNING_KEY_FILE.
func writeKeys(dir string) (p256, ed string, err error) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	for _, k := range []struct {
		path *string
		key  any
		name string
	}{{&p256, ec, "p256.pem"}, {&ed, edKey, "ed25519.pem"}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return "", "", err
		}
		*k.path = filepath.Join(dir, k.name)
		if err := os.WriteFile(*k.path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return "", "", err
		}
	}
	return p256, ed, nil
}

// createUsers makes the user who logs in (the hit-path variants carry a real
// Keycloak access token) and the bulk users (real ids for orgsync's Keycloak
// calls, with tokens from the benchmark's issuer), all members of acme.
// Keycloak is asked eight calls at a time: it is shared.
func (e *env) createUsers(ctx context.Context) error {
	if old, err := e.admin.usersWithPrefix(ctx, userPrefix); err == nil && len(old) > 0 {
		logf("deleting %d users left by an interrupted run", len(old))
		parallel(8, len(old), func(i int) error { return e.admin.deleteUser(ctx, old[i]) })
	}
	run := randomHex(6)
	e.login.username, e.login.password = userPrefix+run+"-login", "bench-"+randomHex(16)
	id, err := e.admin.createUser(ctx, e.login.username, e.login.password)
	if err != nil {
		return err
	}
	e.bulk = append(e.bulk, bulkUser{id: id, username: e.login.username}) // deleted with the others
	if err := e.admin.addMember(ctx, e.acmeID, id); err != nil {
		return err
	}
	logf("creating %d users in realm %s", e.o.users, e.kc.Realm)
	users := make([]bulkUser, e.o.users)
	t := time.Now()
	err = parallel(8, len(users), func(i int) error {
		name := fmt.Sprintf("%s%s-%04d", userPrefix, run, i)
		id, err := e.admin.createUser(ctx, name, "")
		if err != nil {
			return err
		}
		users[i] = bulkUser{id: id, username: name}
		if err := e.admin.addMember(ctx, e.acmeID, id); err != nil {
			return err
		}
		users[i].ident, err = e.is.mint(id, name, "acme", e.acmeID, 2*time.Hour)
		return err
	})
	for _, u := range users {
		if u.id != "" {
			e.bulk = append(e.bulk, u)
		}
	}
	logf("created %d users in %s", len(users), time.Since(t).Round(time.Millisecond))
	return err
}

// bulkUsers are the created users that have minted identities (not the login user).
func (e *env) bulkUsers() []bulkUser {
	out := make([]bulkUser, 0, len(e.bulk))
	for _, u := range e.bulk {
		if u.ident != nil {
			out = append(out, u)
		}
	}
	return out
}

func (e *env) deleteUsers() {
	if len(e.bulk) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logf("deleting %d users", len(e.bulk))
	if err := parallel(8, len(e.bulk), func(i int) error { return e.admin.deleteUser(ctx, e.bulk[i].id) }); err != nil {
		logf("deleting users: %v", err)
	}
	e.bulk = nil
}

// parallel runs fn(0..n-1) on at most k goroutines and returns the first error.
func parallel(k, n int, fn func(i int) error) error {
	errs := make(chan error, n)
	sem := make(chan struct{}, k)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem }()
			errs <- fn(i)
		}(i)
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// runnerEnv is a runner's environment as nginx_config.envs would pass it.
func (e *env) runnerEnv(keyFile string, extra map[string]string) map[string]string {
	m := map[string]string{
		"KEYCLOAK_URL":            e.proxy.url,
		"KEYCLOAK_REALM":          e.kc.Realm,
		"KEYCLOAK_ISSUER":         e.kc.Issuer, // the tokens' (Keycloak's own address), not the proxy's
		"KEYCLOAK_CLIENT_ID":      e.kc.SAClientID,
		"KEYCLOAK_CLIENT_SECRET":  e.kc.SAClientSecret,
		"REDIS_URL":               e.redis.url,
		"REDIS_VALUE_SECRET":      redisValueSecret,
		"RUNNER_SIGNING_KEY_FILE": keyFile,
		"RUNNER_LOG_LEVEL":        "warn",
		"ORGSYNC_WEBHOOK_SECRET":  webhookSecret,
	}
	for k, v := range extra {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// regexpFlag compiles the value of the flag name, nil when it is empty; a
// bad expression ends the command.
func regexpFlag(name, value string) *regexp.Regexp {
	if value == "" {
		return nil
	}
	re, err := regexp.Compile(value)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-e2e: -%s: %v\n", name, err)
		os.Exit(2)
	}
	return re
}
