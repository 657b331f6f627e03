package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	"github.com/redis/go-redis/v9"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
)

const assertionHeader = "X-Identity-Assertion"

var connCounts = []int{1, 16}

// variant is one plugin chain on one runner.
type variant struct {
	name   string
	runner *runnerProc
	noop   *variant // the no-op chain of the same runner; nil for a no-op
	confs  []pluginConf
	exp    expect
	token  uint32
	login  bool   // carries the logged-in user's headers, rebuilt each round
	cold   bool   // bulk users, invalidated before each run: one Keycloak call per call
	req    string // the request the login variants send: reqBrowser ("" too) or reqAPI
	// redisFloor: a Redis-only hit's Redis URL; each round also measures one
	// bare GET there (redisfloor.go)
	redisFloor string
	frames     [][]byte
	subs       []string
}

// key names the variant in the results: its chain, and the request when it
// is not the browser's.
func (v *variant) key() string {
	if v.req == reqAPI {
		return v.name + " [" + reqAPI + "]"
	}
	return v.name
}

func (v *variant) request() string {
	if v.req == "" {
		return reqBrowser
	}
	return v.req
}

func jsonConf(v any) string { b, _ := json.Marshal(v); return string(b) }

func (e *env) userinfoConf(selfIssued bool, assertion bool) pluginConf {
	c := map[string]any{"issuer": e.kc.Issuer, "audience": e.kc.ClientID}
	if selfIssued {
		// The issuer mints tokens as Keycloak does for the apisix client.
		c = map[string]any{"issuer": e.is.url, "jwks_uri": e.is.jwksURI, "audience": "apisix"}
	}
	if assertion {
		c["assertion"] = map[string]any{"audience": "mitxonline", "ttl": "60s"}
	}
	return pluginConf{"userinfo", jsonConf(c)}
}

func orgsyncConf(fresh, stale string) pluginConf {
	c := map[string]any{}
	if fresh != "" {
		c["fresh_ttl"], c["stale_ttl"] = fresh, stale
	}
	return pluginConf{"orgsync", jsonConf(c)}
}

var noopConf = pluginConf{"not-a-plugin", "{}"}

func (v *variant) prepare() error {
	tok, err := prepareConf(v.runner.Socket(), "route#"+v.key()+"#ext-plugin-post-req#1", v.confs)
	v.token = tok
	return err
}

// sample is one run of one variant in one round.
type sample struct {
	m          *measurement
	ratioP50   float64
	ratioTput  float64
	ratioCPU   float64 // runner CPU per call over the no-op's
	allocsOver float64 // runner allocations per call minus the no-op's
	kcPerCall  float64
	hasKCCount bool
	floorCPU   time.Duration // a bare GET's CPU in the same round (variants with redisFloor)
	ratioFloor float64       // the no-op's CPU per call plus floorCPU, over the no-op's
	overFloor  float64       // runner CPU per call over the no-op's plus floorCPU
}

// floorRatios compares a Redis-hit variant's runner CPU per call with the
// Redis GET floor of its round: the no-op plus one bare GET against the no-op
// (the least any hit that waits on Redis can read), and the hit against that
// sum (how far the plugins and the runner's own Redis work are above it).
func floorRatios(hit, noop, get time.Duration) (noopPlusGet, hitOverFloor float64) {
	if noop <= 0 || get <= 0 {
		return 0, 0
	}
	return float64(noop+get) / float64(noop), float64(hit) / float64(noop+get)
}

// rounds runs every variant in each round, in an order rotated per round, at
// 1 and 16 connections, and compares each with its runner's no-op run of the
// same round.
func (e *env) rounds(ctx context.Context) (err error) {
	localOff, localOffValue, _ := strings.Cut(e.o.localOffEnv, "=")
	// Every runner serves /metrics (the allocation counts are read there),
	// and pprof on it too when a profile is asked for, idle until it is taken.
	withPprof := func(env map[string]string) map[string]string {
		if e.o.profile > 0 {
			env["RUNNER_PPROF"] = "1"
		}
		return env
	}
	rA, err := e.startMeasuredRunner("p256", e.p256, withPprof(map[string]string{"KEYCLOAK_EVENTS_INTERVAL": "0s"}))
	if err != nil {
		return err
	}
	defer rA.stop()
	pprofAddr := rA.metrics
	rB, err := e.startMeasuredRunner("ed25519", e.ed25519, withPprof(map[string]string{"KEYCLOAK_EVENTS_INTERVAL": "0s"}))
	if err != nil {
		return err
	}
	defer rB.stop()
	rC, err := e.startMeasuredRunner("redis-only", e.p256, withPprof(map[string]string{"KEYCLOAK_EVENTS_INTERVAL": "0s", localOff: localOffValue}))
	if err != nil {
		return err
	}
	defer rC.stop()
	// The same, with Redis reached through its unix socket: what a Redis on
	// the gateway's own host costs.
	rE, err := e.startMeasuredRunner("redis-only-unix", e.p256, withPprof(map[string]string{"KEYCLOAK_EVENTS_INTERVAL": "0s",
		localOff: localOffValue, "REDIS_URL": e.redis.unixURL}))
	if err != nil {
		return err
	}
	defer rE.stop()
	revRedis, err := e.seedRevocations(ctx, e.o.revocations)
	if err != nil {
		return err
	}
	defer revRedis.stop()
	rD, err := e.startMeasuredRunner("revocations", e.p256, map[string]string{"KEYCLOAK_EVENTS_INTERVAL": "0s",
		"REDIS_URL": revRedis.url})
	if err != nil {
		return err
	}
	defer rD.stop()
	held, ok := scrapeCounter(rD.metrics, "apisix_identity_cache_revocations_entries")
	if !ok || held < float64(e.o.revocations) {
		return fmt.Errorf("the revocations runner holds %.0f revocations, want %d", held, e.o.revocations)
	}

	rewrite := func(assert bool, orgs string) expect {
		x := expect{action: hrc.ActionRewrite, orgs: orgs}
		if assert {
			x.assertion = assertionHeader
		}
		return x
	}
	noopA := &variant{name: "no-op (P-256 runner)", runner: rA, confs: []pluginConf{noopConf}, login: true}
	noopB := &variant{name: "no-op (Ed25519 runner)", runner: rB, confs: []pluginConf{noopConf}, login: true}
	noopC := &variant{name: "no-op (local tier off)", runner: rC, confs: []pluginConf{noopConf}, login: true}
	noopD := &variant{name: "no-op (revocations held)", runner: rD, confs: []pluginConf{noopConf}, login: true}
	noopE := &variant{name: "no-op (local tier off, Redis's unix socket)", runner: rE, confs: []pluginConf{noopConf}, login: true}
	hitOrgsync := orgsyncConf("10m", "20m")
	localHit := &variant{name: "userinfo + orgsync, local hit (P-256)", runner: rA, noop: noopA, login: true,
		confs: []pluginConf{e.userinfoConf(false, true), hitOrgsync}, exp: rewrite(true, "acme")}
	ruleHit := &variant{name: "userinfo + orgsync + rule {org: acme}, local hit (P-256)", runner: rA, noop: noopA, login: true,
		confs: []pluginConf{localHit.confs[0], ruleConf(hitOrgsync, `{"org":"acme"}`)}, exp: rewrite(true, "acme")}
	revokedHit := &variant{name: fmt.Sprintf("revocations held (%d), userinfo + orgsync, local hit (P-256)", e.o.revocations),
		runner: rD, noop: noopD, login: true, confs: localHit.confs, exp: rewrite(true, "acme")}
	// The API request: the same chains on the same runner, against a no-op
	// that gets the API request too.
	noopAPI := &variant{name: noopA.name, runner: rA, confs: noopA.confs, login: true, req: reqAPI}
	userinfoP256 := &variant{name: "userinfo + assertion P-256", runner: rA, noop: noopA, login: true,
		confs: []pluginConf{e.userinfoConf(false, true)}, exp: rewrite(true, "")}
	vs := []*variant{
		noopA, noopB, noopC, noopD, noopE, noopAPI,
		{name: "userinfo, no assertion", runner: rA, noop: noopA, login: true,
			confs: []pluginConf{e.userinfoConf(false, false)}, exp: rewrite(false, "")},
		userinfoP256,
		{name: userinfoP256.name, runner: rA, noop: noopAPI, login: true, req: reqAPI, confs: userinfoP256.confs, exp: rewrite(true, "")},
		{name: "userinfo + assertion Ed25519", runner: rB, noop: noopB, login: true,
			confs: []pluginConf{e.userinfoConf(false, true)}, exp: rewrite(true, "")},
		localHit,
		{name: localHit.name, runner: rA, noop: noopAPI, login: true, req: reqAPI, confs: localHit.confs, exp: rewrite(true, "acme")},
		ruleHit, revokedHit,
		{name: "userinfo + orgsync, Redis hit (P-256)", runner: rC, noop: noopC, login: true, redisFloor: e.redis.url,
			confs: []pluginConf{e.userinfoConf(false, true), hitOrgsync}, exp: rewrite(true, "acme")},
		{name: redisUnixHit, runner: rE, noop: noopE, login: true, redisFloor: e.redis.unixURL,
			confs: []pluginConf{e.userinfoConf(false, true), hitOrgsync}, exp: rewrite(true, "acme")},
		{name: "userinfo + orgsync, cold user (Keycloak)", runner: rA, noop: noopA, cold: true,
			confs: []pluginConf{e.userinfoConf(true, true), hitOrgsync}, exp: rewrite(true, "acme")},
	}
	if e.o.only != nil {
		vs = onlyVariants(vs, e.o.only)
	}
	for _, v := range vs {
		if v.noop == nil {
			v.exp = expect{action: hrc.ActionNONE}
		}
		if err := v.prepare(); err != nil {
			return fmt.Errorf("%s: PrepareConf: %w", v.name, err)
		}
	}
	inv, err := newInvalidator(rA)
	if err != nil {
		return err
	}
	defer inv.close()

	// Cold users: their tokens verified once here, so that "cold" means one
	// thing: orgsync asks Keycloak.
	bulk := e.bulkUsers()
	for _, cold := range vs {
		if !cold.cold {
			continue
		}
		for _, u := range bulk {
			cold.frames = append(cold.frames, callFrame(1, cold.token, "/app/dashboard", browserHeaders(u.ident)))
			cold.subs = append(cold.subs, u.id)
		}
		if _, err := drive(rA.Socket(), prepared(cold.frames, cold.subs), &cold.exp, 8, time.Minute, len(bulk), 0); err != nil {
			return fmt.Errorf("warming the cold users' tokens: %w", err)
		}
	}

	results := map[string]map[int][]sample{}
	for _, v := range vs {
		results[v.key()] = map[int][]sample{}
	}
	for round := 0; round < e.o.rounds; round++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A fresh login each round: Keycloak's access tokens live 5 minutes.
		sess, err := e.admin.login(ctx, e.login.username, e.login.password)
		if err != nil {
			return err
		}
		ident := sessionIdentity(sess)
		for _, v := range vs {
			if v.login {
				v.frames = [][]byte{callFrame(1, v.token, "/app/dashboard", requestHeaders(v.req, ident))}
				v.subs = []string{sess.sub}
			}
		}
		if round == 0 {
			e.report.requests(ident)
		}
		order := append(slices.Clone(vs[round%len(vs):]), vs[:round%len(vs)]...)
		logf("round %d/%d", round+1, e.o.rounds)
		for _, v := range order {
			for _, conns := range connCounts {
				s, err := e.measureVariant(v, conns, inv, bulk)
				if err != nil {
					return fmt.Errorf("round %d, %s, %d connections: %w", round+1, v.name, conns, err)
				}
				results[v.key()][conns] = append(results[v.key()][conns], s)
			}
		}
		for _, v := range vs {
			if v.redisFloor == "" {
				continue
			}
			for _, conns := range connCounts {
				floor, err := e.redisFloor(v.redisFloor, conns)
				if err != nil {
					return fmt.Errorf("round %d, %s: %w", round+1, v.name, err)
				}
				results[v.key()][conns][round].floorCPU = floor
			}
		}
		// Ratios against the no-op of the same runner, round and concurrency.
		for _, v := range vs {
			if v.noop == nil {
				continue
			}
			for _, conns := range connCounts {
				s := &results[v.key()][conns][round]
				n := results[v.noop.key()][conns][round].m
				s.ratioP50 = float64(s.m.pct(0.5)) / float64(n.pct(0.5))
				s.ratioTput = s.m.throughput() / n.throughput()
				s.ratioCPU = float64(s.m.cpuPerCall()) / float64(n.cpuPerCall())
				s.allocsOver = s.m.allocsPerCall() - n.allocsPerCall()
				s.ratioFloor, s.overFloor = floorRatios(s.m.cpuPerCall(), n.cpuPerCall(), s.floorCPU)
			}
		}
	}
	localOffRead := true
	if bin, err := os.ReadFile(e.binary); err == nil && !bytes.Contains(bin, []byte(localOff)) {
		localOffRead = false
		e.report.note("This runner does not read " + localOff + ": the \"Redis hit\" row was served by the in-process tier like the local-hit row.")
	}
	e.report.rounds(vs, results, e.o, localOffRead)
	e.report.revocationCost(revokedHit, localHit, results, held)
	e.report.ruleCost(ruleHit, localHit, results)
	if err := e.clientCost(vs); err != nil {
		return err
	}
	if e.o.profile > 0 {
		if err := e.profileHitPath(vs); err != nil {
			return err
		}
		// Signatures made by the P-256 runner over every call it served:
		// the assertion is signed once per identity, not per request.
		if n, ok := scrapeCounter(pprofAddr, "apisix_identity_userinfo_assertions_signed_total"); ok {
			calls := 0
			for _, v := range vs {
				if v.runner == rA && v.noop != nil {
					for _, conns := range connCounts {
						for _, s := range results[v.key()][conns] {
							calls += s.m.calls
						}
					}
				}
			}
			e.report.note(fmt.Sprintf("The P-256 runner signed %.0f assertions in all (warm-ups and the profile included) while "+
				"serving more than %d timed plugin calls: one signature per identity (the logged-in user gets a new token "+
				"each round; each cold user has one), not one per request.", n, calls))
		}
	}
	return nil
}

// scrapeCounter reads one unlabelled counter from the runner's /metrics.
func scrapeCounter(addr, name string) (float64, bool) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// profileHitPath takes a CPU profile of the runner while the userinfo +
// orgsync local-hit variant (or the one -profile-variant names) runs on the
// browser request at -profile-conns connections, and puts its top functions
// in the report: where the time over the no-op goes.
func (e *env) profileHitPath(vs []*variant) error {
	v := hitVariant(vs)
	if e.o.profileVariant != nil {
		v = nil
		for _, x := range vs {
			if e.o.profileVariant.MatchString(x.name) && x.request() == reqBrowser {
				v = x
				break
			}
		}
	}
	if v == nil || v.runner.metrics == "" {
		return nil
	}
	addr := v.runner.metrics
	type result struct {
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(e.o.profile.Seconds())))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
		}
		done <- result{b, err}
	}()
	m, err := drive(v.runner.Socket(), prepared(v.frames, v.subs), &v.exp, e.o.profileConns, e.o.profile+time.Second, 0, v.runner.Pid())
	if err != nil {
		return err
	}
	res := <-done
	if res.err != nil {
		e.report.note("No CPU profile: the runner's pprof endpoint (RUNNER_METRICS_ADDR + RUNNER_PPROF=1) answered: " + res.err.Error())
		return nil
	}
	path := filepath.Join(e.root, ".work", "bench-e2e-cpu.pprof")
	_ = os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, res.body, 0o644); err != nil {
		return err
	}
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", e.binary, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %v\n%s", err, top)
	}
	cum, _ := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=400", e.binary, path).CombinedOutput()
	// The listings go next to the profile too, for whoever reads it without pprof.
	_ = os.WriteFile(filepath.Join(e.root, ".work", "bench-e2e-cpu-top.txt"), append(append(top, '\n'), cum...), 0o644)
	e.report.profile(v.name+", browser request", m, string(top), string(cum), filepath.Join(".work", "bench-e2e-cpu.pprof"))
	return nil
}

func hitVariant(vs []*variant) *variant {
	for _, x := range vs {
		if strings.HasPrefix(x.name, "userinfo + orgsync, local") && x.request() == reqBrowser {
			return x
		}
	}
	return nil
}

func (e *env) measureVariant(v *variant, conns int, inv *invalidator, bulk []bulkUser) (sample, error) {
	src := prepared(v.frames, v.subs)
	if v.cold {
		// Every user's organizations dropped on every tier, then each call
		// a different user: each is one fetch from Keycloak.
		ids := make([]string, len(bulk))
		for i, u := range bulk {
			ids[i] = u.id
		}
		if err := inv.invalidate(ids); err != nil {
			return sample{}, err
		}
		time.Sleep(200 * time.Millisecond)
		e.proxy.reset()
		m, err := v.runner.driveCounted(src, &v.exp, conns, e.o.dur, len(bulk))
		if err != nil {
			return sample{}, err
		}
		return sample{m: m, kcPerCall: float64(e.proxy.orgCallCount()) / float64(m.calls), hasKCCount: true}, nil
	}
	if _, err := drive(v.runner.Socket(), src, &v.exp, conns, 10*time.Second, conns*16, 0); err != nil {
		return sample{}, fmt.Errorf("warm-up: %w", err)
	}
	m, err := v.runner.driveCounted(src, &v.exp, conns, e.o.dur, 0)
	if err != nil {
		return sample{}, err
	}
	return sample{m: m}, nil
}

// clientCost drives an echo server that answers the userinfo + orgsync
// answer, with the same client and frames: what the client itself costs.
func (e *env) clientCost(vs []*variant) error {
	v := hitVariant(vs)
	if v == nil {
		return nil
	}
	answer, err := oneAnswer(v.runner.Socket(), v.frames[0])
	if err != nil {
		return err
	}
	sock, stop, err := echoServer(e.dir, answer)
	if err != nil {
		return err
	}
	defer stop()
	var rows []*measurement
	for _, conns := range connCounts {
		m, err := drive(sock, prepared(v.frames, v.subs), &v.exp, conns, e.o.dur, 0, 0)
		if err != nil {
			return fmt.Errorf("echo: %w", err)
		}
		rows = append(rows, m)
	}
	e.report.clientCost(len(v.frames[0]), len(answer), rows)
	return nil
}

// invalidator posts to the runner's orgsync invalidation route, signed, as
// Keycloak's event webhook or an app would.
type invalidator struct {
	gw    *apisix.Gateway
	route *apisix.Route
}

func newInvalidator(r *runnerProc) (*invalidator, error) {
	return &invalidator{gw: apisix.NewGateway(r.Socket()), route: &apisix.Route{ID: "bench-invalidate",
		Conf: []apisix.PluginConf{{Name: "orgsync", Value: `{"invalidate":true,"secret_env":"ORGSYNC_WEBHOOK_SECRET"}`}}}}, nil
}

func (inv *invalidator) close() { inv.gw.Close() }

func (inv *invalidator) invalidate(ids []string) error {
	// "time" dates the body: the route refuses a signed body it has seen, or
	// one older than its replay window.
	body, _ := json.Marshal(map[string]any{"user_ids": ids, "time": time.Now().UnixMilli()})
	mac := hmac.New(sha256.New, []byte(webhookSecret))
	mac.Write(body)
	h := http.Header{}
	h.Set("X-Keycloak-Signature", hex.EncodeToString(mac.Sum(nil)))
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := inv.gw.Do(ctx, inv.route, &apisix.Request{Method: http.MethodPost, Path: "/hooks/keycloak", Header: h, Body: body})
	if err != nil {
		return err
	}
	if res.Status != http.StatusOK || res.Upstream {
		return fmt.Errorf("invalidation answered %d (upstream %v): %s %v", res.Status, res.Upstream, res.Body, res.Err)
	}
	return nil
}

// sweepScenario runs N distinct users through the cache-hit path for each
// working-set size and reports the runner's resident memory. The users are
// synthetic (tokens from the benchmark's issuer) and their orgsync entries
// are written to Redis ahead, in the cache's own format through its API, so
// that a million users need no million Keycloak accounts.
func (e *env) sweepScenario(ctx context.Context) error {
	nonce := rand.Uint32() & 0xffff
	subOf := func(i int) string { return fmt.Sprintf("b3e2e000-%04x-4000-8000-%012x", nonce, i) }
	snap := jsonConf(map[string]any{"account": "active",
		"orgs": []map[string]any{{"id": e.acmeID, "alias": "acme", "attributes": map[string][]string{"tier": {"gold"}}}}})
	for _, n := range e.o.sweep {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		logf("sweep: seeding %d users", n)
		t := time.Now()
		seeder, err := cache.New(ctx, &cache.Options{RedisURL: e.redis.url, ValueSecret: []byte(redisValueSecret)})
		if err != nil {
			return err
		}
		err = parallel(32, n, func(i int) error {
			// A loaded machine makes a Redis write miss the cache's deadline
			// now and then: try again rather than lose the run.
			var err error
			for try := 0; try < 5; try++ {
				if err = seeder.Set(ctx, "orgsync:user:"+e.kc.Realm+":"+subOf(i)+":oa", []byte(snap)); err == nil {
					return nil
				}
				time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
			}
			return err
		})
		seeder.Close()
		if err != nil {
			return fmt.Errorf("seeding: %w", err)
		}
		logf("sweep: seeded %d users in %s", n, time.Since(t).Round(time.Millisecond))
		r, err := startRunner(fmt.Sprintf("sweep-%d", n), e.binary, e.runnerEnv(e.p256, map[string]string{"KEYCLOAK_EVENTS_INTERVAL": "0s"}))
		if err != nil {
			return err
		}
		var fellThrough atomic.Int64
		v := &variant{name: fmt.Sprintf("sweep-%d", n), runner: r,
			confs: []pluginConf{e.userinfoConf(true, true), orgsyncConf("24h", "24h")},
			exp:   expect{action: hrc.ActionRewrite, assertion: assertionHeader, orgs: "acme", fellThrough: &fellThrough}}
		if err := v.prepare(); err != nil {
			r.stop()
			return err
		}
		mintFrame := func(i int) ([]byte, string, error) {
			sub := subOf(i % n)
			id, err := e.is.mint(sub, fmt.Sprintf("sweep-%d", i%n), "acme", e.acmeID, 2*time.Hour)
			if err != nil {
				return nil, "", err
			}
			return callFrame(1, v.token, "/app/dashboard", browserHeaders(id)), sub, nil
		}
		var src source
		streamed := n > 20000
		if streamed {
			src = mintFrame
		} else {
			frames, subs := make([][]byte, n), make([]string, n)
			for i := range frames {
				if frames[i], subs[i], err = mintFrame(i); err != nil {
					r.stop()
					return err
				}
			}
			src = prepared(frames, subs)
		}
		calls := max(n, e.o.sweepCalls)
		rssIdle, _ := procRSS(r.Pid())
		e.proxy.reset()
		logf("sweep: %d calls over %d users", calls, n)
		m, err := drive(r.Socket(), src, &v.exp, 16, e.o.sweepMax, calls, r.Pid())
		if err != nil {
			r.stop()
			return fmt.Errorf("%d users: %w\nrunner output (end):\n%s", n, err, tail(r.Output(), 3000))
		}
		hwm, _ := procHWM(r.Pid())
		e.report.sweepRow(n, m, rssIdle, hwm, e.proxy.orgCallCount(), fellThrough.Load(), e.o.rssBudgetMB, n == slices.Max(e.o.sweep))
		if err := r.stop(); err != nil {
			return err
		}
	}
	rdb := redisClient(e.redis.url)
	defer rdb.Close()
	return rdb.FlushDB(ctx).Err()
}

func redisClient(u string) *redis.Client {
	o, _ := redis.ParseURL(u)
	return redis.NewClient(o)
}

// fleet: 3 runners sharing Redis, many concurrent clients over the bulk users
// for 3 fresh_ttl periods; the counting proxy says how often Keycloak was
// asked about each user.
func (e *env) fleet(ctx context.Context) error {
	bulk := e.bulkUsers()
	ttl := e.o.fleetTTL
	var runners []*runnerProc
	defer func() {
		for _, r := range runners {
			r.stop()
		}
	}()
	for i := 0; i < 3; i++ {
		// Watcher off: the test realm is shared with other test runs, whose
		// admin events (an organization updated invalidates all its members)
		// would add refreshes that are not the cache's doing.
		r, err := startRunner(fmt.Sprintf("fleet-%d", i+1), e.binary, e.runnerEnv(e.p256, map[string]string{"KEYCLOAK_EVENTS_INTERVAL": "0s"}))
		if err != nil {
			return err
		}
		runners = append(runners, r)
	}
	exp := expect{action: hrc.ActionRewrite, assertion: assertionHeader, orgs: "acme"}
	confs := []pluginConf{e.userinfoConf(true, true), orgsyncConf(ttl.String(), "10m")}
	inv, _ := newInvalidator(runners[0])
	defer inv.close()
	ids := make([]string, len(bulk))
	for i, u := range bulk {
		ids[i] = u.id
	}
	if err := inv.invalidate(ids); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	srcs := make([]source, len(runners))
	for k, r := range runners {
		v := &variant{name: "fleet", runner: r, confs: confs}
		if err := v.prepare(); err != nil {
			return err
		}
		frames, subs := make([][]byte, len(bulk)), make([]string, len(bulk))
		perm := rand.Perm(len(bulk))
		for i, j := range perm {
			frames[i] = callFrame(1, v.token, "/app/dashboard", browserHeaders(bulk[j].ident))
			subs[i] = bulk[j].id
		}
		srcs[k] = prepared(frames, subs)
	}
	dur := 3 * ttl
	e.proxy.reset()
	logf("fleet: %d clients over %d users on 3 runners for %s (fresh_ttl %s)", e.o.fleetConns, len(bulk), dur, ttl)
	start := time.Now()
	var wg sync.WaitGroup
	ms := make([]*measurement, len(runners))
	errs := make([]error, len(runners))
	for k, r := range runners {
		conns := e.o.fleetConns / len(runners)
		if k < e.o.fleetConns%len(runners) {
			conns++
		}
		wg.Add(1)
		go func(k int, r *runnerProc, conns int) {
			defer wg.Done()
			ms[k], errs[k] = drive(r.Socket(), srcs[k], &exp, conns, dur, 0, r.Pid())
		}(k, r, conns)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	e.report.fleetResult(e.o.fleetConns, len(bulk), ttl, dur, start, ms, e.proxy.orgCalls(false), e.proxy.orgCalls(true), ids, e.proxy.errorCount())
	return nil
}

// propagation: a membership change made with the admin API, and the time
// until the first upstream request shows it; with the default settings and
// with the admin-event watcher off.
func (e *env) propagation(ctx context.Context) error {
	globex, err := e.admin.orgID(ctx, "globex")
	if err != nil {
		return err
	}
	bulk := e.bulkUsers()
	runs := []struct {
		name   string
		env    map[string]string
		conf   pluginConf
		jitter time.Duration
		bound  time.Duration
	}{
		{"default settings (watcher on, orgsync defaults)", nil, orgsyncConf("", ""), time.Second, 0},
		{fmt.Sprintf("watcher off (KEYCLOAK_EVENTS_INTERVAL=0s), fresh_ttl %s", e.o.offTTL),
			map[string]string{"KEYCLOAK_EVENTS_INTERVAL": "0s"}, orgsyncConf(e.o.offTTL.String(), "10m"), e.o.offTTL, e.o.offTTL},
	}
	for k, run := range runs {
		u := bulk[k%len(bulk)]
		env := e.runnerEnv(e.p256, run.env)
		env["KEYCLOAK_URL"] = e.kc.URL
		r, err := startRunner("propagation", e.binary, env)
		if err != nil {
			return err
		}
		delays, missed, err := e.propagate(ctx, r, run.conf, u, globex, run.jitter)
		r.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", run.name, err)
		}
		e.report.propagationRow(run.name, delays, missed, run.bound)
	}
	return nil
}

func (e *env) propagate(ctx context.Context, r *runnerProc, oc pluginConf, u bulkUser, globex string, jitter time.Duration) ([]time.Duration, int, error) {
	v := &variant{name: "propagation", runner: r, confs: []pluginConf{e.userinfoConf(true, false), oc}}
	if err := v.prepare(); err != nil {
		return nil, 0, err
	}
	f := callFrame(1, v.token, "/app/dashboard", browserHeaders(u.ident))
	c, err := net.Dial("unix", r.Socket())
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	inGlobex := func() (bool, error) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(f); err != nil {
			return false, err
		}
		ty, p, err := readFrame(c, nil)
		if err != nil {
			return false, err
		}
		if err := checkAnswer(ty, p, &expect{action: hrc.ActionRewrite}, u.id, true); err != nil {
			return false, err
		}
		return strings.Contains(rewriteHeaders(hrc.GetRootAsResp(p, 0))["x-user-orgs"], "globex"), nil
	}
	member, err := inGlobex()
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if member {
			_ = e.admin.removeMember(context.Background(), globex, u.id)
		}
	}()
	var delays []time.Duration
	missed := 0
	for i := 0; i < e.o.changes; i++ {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		time.Sleep(time.Duration(rand.Int64N(int64(jitter) + 1)))
		want := !member
		if want {
			err = e.admin.addMember(ctx, globex, u.id)
		} else {
			err = e.admin.removeMember(ctx, globex, u.id)
		}
		if err != nil {
			return nil, 0, err
		}
		member = want
		t0 := time.Now()
		limit := t0.Add(45 * time.Second)
		for {
			got, err := inGlobex()
			if err != nil {
				return nil, 0, err
			}
			if got == want {
				delays = append(delays, time.Since(t0))
				break
			}
			if time.Now().After(limit) {
				missed++
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return delays, missed, nil
}

// onlyVariants keeps the variants whose name matches re, and the no-ops they
// are compared with.
func onlyVariants(vs []*variant, re *regexp.Regexp) []*variant {
	keep := map[*variant]bool{}
	for _, v := range vs {
		if v.noop != nil && re.MatchString(v.name) {
			keep[v], keep[v.noop] = true, true
		}
	}
	var out []*variant
	for _, v := range vs {
		if keep[v] {
			out = append(out, v)
		}
	}
	return out
}
