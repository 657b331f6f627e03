package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// report accumulates the Markdown the run prints and writes.
type report struct {
	b        strings.Builder
	notes    []string
	verdicts []string
}

func newReport() *report { return &report{} }

func (r *report) String() string {
	s := r.b.String()
	if len(r.verdicts) > 0 {
		s += "\n### Targets (issue 18, item 6)\n\n"
		for _, v := range r.verdicts {
			s += "- " + v + "\n"
		}
	}
	if len(r.notes) > 0 {
		s += "\n### Notes\n\n"
		for _, n := range r.notes {
			s += "- " + n + "\n"
		}
	}
	return s
}

func (r *report) note(s string) { r.notes = append(r.notes, s) }

func (r *report) printf(format string, a ...any) { fmt.Fprintf(&r.b, format, a...) }

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "?"
}

func (r *report) machine(root string) {
	rev, _ := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output()
	r.printf("## bench-e2e results\n\n")
	r.printf("Machine: %d CPUs (%s), %s, %s/%s; commit %s; %s UTC.\n\n", runtime.NumCPU(), cpuModel(), runtime.Version(),
		runtime.GOOS, runtime.GOARCH, strings.TrimSpace(string(rev)), time.Now().UTC().Format("2006-01-02 15:04"))
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }

func mb(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func spread(xs []float64, format string) string {
	if len(xs) == 0 {
		return "-"
	}
	return fmt.Sprintf(format+" ("+format+"-"+format+")", median(xs), slices.Min(xs), slices.Max(xs))
}

func (r *report) rounds(vs []*variant, res map[string]map[int][]sample, o *options, redisMeasured bool) {
	r.printf("### Plugin chains against the no-op chain (%d rounds, %s per run)\n\n", o.rounds, o.dur)
	r.printf("Medians over the rounds; ratios are to the no-op chain of the same runner, request, round and concurrency: " +
		"median (min-max). Allocations are the runner's heap objects per call (its go_memstats_mallocs_total over the run, " +
		"a scrape's own taken off); \"over no-op\" subtracts the no-op's per call in the same round.\n\n")
	r.printf("| chain | request | conns | p50 µs | p99 µs | calls/s | runner CPU µs/call | allocs/call | client CPU µs/call | runner RSS MB | p50 vs no-op | calls/s vs no-op | CPU/call vs no-op | allocs/call over no-op |\n")
	r.printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, v := range vs {
		for _, conns := range connCounts {
			ss := res[v.key()][conns]
			var p50, p99, tput, cpu, ccpu, allocs, rp, rt, rc, ra, kc []float64
			var rss int64
			for _, s := range ss {
				p50 = append(p50, float64(s.m.pct(0.5)))
				p99 = append(p99, float64(s.m.pct(0.99)))
				tput = append(tput, s.m.throughput())
				cpu = append(cpu, float64(s.m.cpuPerCall()))
				ccpu = append(ccpu, float64(s.m.clientPerCall()))
				allocs = append(allocs, s.m.allocsPerCall())
				rss = max(rss, s.m.rss)
				rp = append(rp, s.ratioP50)
				rt = append(rt, s.ratioTput)
				rc = append(rc, s.ratioCPU)
				ra = append(ra, s.allocsOver)
				if s.hasKCCount {
					kc = append(kc, s.kcPerCall)
				}
			}
			name := v.name
			if len(kc) > 0 {
				name += fmt.Sprintf(" [%.2f org lookups/call]", median(kc))
			}
			ratioP, ratioT, ratioC, overA := "1.00", "1.00", "1.00", "0"
			if v.noop != nil {
				ratioP, ratioT, ratioC, overA = spread(rp, "%.2f"), spread(rt, "%.2f"), spread(rc, "%.2f"), spread(ra, "%.1f")
			}
			req := v.request()
			if v.cold {
				req += " (minted)"
			}
			r.printf("| %s | %s | %d | %s | %s | %.0f | %s | %.1f | %s | %s | %s | %s | %s | %s |\n", name, req, conns,
				us(time.Duration(median(p50))), us(time.Duration(median(p99))), median(tput),
				us(time.Duration(median(cpu))), median(allocs), us(time.Duration(median(ccpu))), mb(rss), ratioP, ratioT, ratioC, overA)
		}
	}
	r.printf("\nThe client CPU column is the benchmark process's: the client, and for the cold rows the in-process counting proxy in front of Keycloak.\n")
	r.printf("\nCalls per run (median): ")
	for _, v := range vs {
		var n []float64
		for _, s := range res[v.key()][1] {
			n = append(n, float64(s.m.calls))
		}
		r.printf("%s %.0f; ", v.key(), median(n))
	}
	r.printf("at 1 connection.\n\n")
	r.targets(vs, res, redisMeasured)
}

// targets states issue 18's targets (item 6) against the figures of the
// browser request; the resident-memory one comes with the sweep.
func (r *report) targets(vs []*variant, res map[string]map[int][]sample, redisMeasured bool) {
	find := func(name, req string) *variant {
		for _, v := range vs {
			if v.name == name && v.request() == req {
				return v
			}
		}
		return nil
	}
	get := func(name string, conns int, f func(sample) float64) (float64, string, bool) {
		v := find(name, reqBrowser)
		if v == nil || len(res[v.key()][conns]) == 0 {
			return 0, "", false
		}
		var xs []float64
		for _, s := range res[v.key()][conns] {
			xs = append(xs, f(s))
		}
		return median(xs), spread(xs, "%.2f"), true
	}
	p50 := func(s sample) float64 { return s.ratioP50 }
	tp := func(s sample) float64 { return s.ratioTput }
	cpu := func(s sample) float64 { return s.ratioCPU }
	over := func(s sample) float64 { return s.allocsOver }
	total := func(s sample) float64 { return s.m.allocsPerCall() }
	lat := func(s sample) float64 { return float64(s.m.pct(0.5)) / float64(time.Microsecond) }
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	const hit, alone, redisHit = "userinfo + orgsync, local hit (P-256)", "userinfo + assertion P-256", "userinfo + orgsync, Redis hit (P-256)"
	r.printf("Targets (issue 18, item 6), browser request, medians over the rounds (min-max):\n\n")
	if x, sp, ok := get(hit, 1, p50); ok {
		r.target(fmt.Sprintf("userinfo + orgsync (in-process hit, P-256 assertion): p50 at 1 connection %s x the no-op (target <= 1.25x): %s", sp, verdict(x <= 1.25)))
	}
	if x, sp, ok := get(hit, 16, tp); ok {
		r.target(fmt.Sprintf("same, throughput at 16 connections %s x the no-op's (target >= 0.67x): %s", sp, verdict(x >= 0.67)))
	}
	if x, sp, ok := get(alone, 1, p50); ok {
		r.target(fmt.Sprintf("userinfo alone (P-256 assertion): p50 at 1 connection %s x the no-op (target <= 1.15x): %s", sp, verdict(x <= 1.15)))
	}
	if _, sp, ok := get(alone, 16, tp); ok {
		r.target(fmt.Sprintf("userinfo alone (P-256 assertion): throughput at 16 connections %s x the no-op's (reported; the issue sets no target of its own)", sp))
	}
	if x, sp, ok := get("userinfo, no assertion", 1, p50); ok {
		r.target(fmt.Sprintf("userinfo alone, no assertion: p50 at 1 connection %s x the no-op (target <= 1.15x): %s", sp, verdict(x <= 1.15)))
	}
	if x1, sp1, ok := get(hit, 1, over); ok {
		x16, sp16, _ := get(hit, 16, over)
		t1, _, _ := get(hit, 1, total)
		n1, _, _ := get("no-op (P-256 runner)", 1, total)
		r.target(fmt.Sprintf("userinfo + orgsync allocations per call over the no-op: %s at 1 connection, %s at 16 (the chain %.1f, the no-op %.1f in all, at 1) (target <= 20): %s",
			sp1, sp16, t1, n1, verdict(max(x1, x16) <= 20)))
	}
	switch {
	case !redisMeasured:
		r.target("Redis-only hit: not measured (the runner has no setting that turns its in-process tier off)")
	default:
		// redisFigures is a Redis-hit variant's runner CPU per call against
		// its no-op at 1 and 16 connections, whether both are within 2x, and
		// its p50 at 1 connection (µs, and against the no-op's).
		redisFigures := func(name string) (cpu1, cpu16 string, within bool, p50us, p50x string, ok bool) {
			x1, cpu1, ok := get(name, 1, cpu)
			if !ok {
				return
			}
			x16, cpu16, _ := get(name, 16, cpu)
			_, p50us, _ = get(name, 1, lat)
			_, p50x, _ = get(name, 1, p50)
			return cpu1, cpu16, max(x1, x16) <= 2, p50us, p50x, true
		}
		// floorFigures: one bare GET's CPU (µs) and the no-op plus it against
		// the no-op, at 1 and 16 connections, in the rounds of name.
		floorFigures := func(name string) string {
			gus := func(s sample) float64 { return float64(s.floorCPU) / float64(time.Microsecond) }
			ratio := func(s sample) float64 { return s.ratioFloor }
			x1, r1, ok := get(name, 1, ratio)
			if !ok || x1 == 0 {
				return ""
			}
			x16, r16, _ := get(name, 16, ratio)
			g1, _, _ := get(name, 1, gus)
			g16, _, _ := get(name, 16, gus)
			over := func(s sample) float64 { return s.overFloor }
			o1, so1, _ := get(name, 1, over)
			o16, so16, _ := get(name, 16, over)
			return fmt.Sprintf("; one bare GET (go-redis, a process of its own, same rounds) costs %.1f µs of CPU at 1 connection and %.1f at 16, "+
				"so the no-op plus that GET alone is %s x the no-op's at 1 and %s at 16 (under 2x possible for a hit that waits on Redis: %s); "+
				"the hit's runner CPU against that floor (the no-op plus the GET) is %s at 1 and %s at 16 (within 2x: %s)",
				g1, g16, r1, r16, yesNo(max(x1, x16) < 2), so1, so16, yesNo(max(o1, o16) <= 2))
		}
		if c1, c16, within, l1, rl1, ok := redisFigures(redisHit); ok {
			r.target(fmt.Sprintf("Redis-only hit (CACHE_LOCAL_MAX_ENTRIES=0): runner CPU per call %s x the no-op's at 1 connection, %s at 16 (target <= 2x): %s; its p50 at 1 connection %s µs, %s x the no-op's (Redis's round trip: reported, not targeted)%s",
				c1, c16, verdict(within), l1, rl1, floorFigures(redisHit)))
		}
		if c1, c16, within, l1, rl1, ok := redisFigures(redisUnixHit); ok {
			r.target(fmt.Sprintf("the same with Redis reached through its unix socket (REDIS_URL=unix://...; reported beside the target, which is read on TCP above): runner CPU per call %s x the no-op's at 1 connection, %s at 16 (within 2x: %s); its p50 at 1 connection %s µs, %s x the no-op's%s",
				c1, c16, yesNo(within), l1, rl1, floorFigures(redisUnixHit)))
		}
	}
	r.printf("\n")
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// redisUnixHit is the Redis-only variant whose runner reaches Redis through
// its unix socket.
const redisUnixHit = "userinfo + orgsync, Redis hit through its unix socket (P-256)"

// target records one verdict: printed where it is made, and again in the
// summary at the end of the report.
func (r *report) target(line string) {
	r.printf("- %s\n", line)
	r.verdicts = append(r.verdicts, line)
}

// requests describes the two requests the identity variants send.
func (r *report) requests(id *identity) {
	r.printf("### The requests\n\n")
	r.printf("Headers as the runner gets them in ext-plugin-post-req after openid-connect, for the logged-in user of the " +
		"first round (a real Keycloak login: password grant through the realm's apisix client, then its userinfo " +
		"endpoint). Value sizes in bytes.\n\n")
	for _, kind := range []string{reqBrowser, reqAPI} {
		hs := requestHeaders(kind, id)
		f := callFrame(1, 1, "/app/dashboard", hs)
		var parts []string
		for _, h := range hs {
			parts = append(parts, fmt.Sprintf("`%s` %d", h.name, len(h.value)))
		}
		r.printf("- **%s**, %d headers, HTTPReqCall frame %d bytes: %s\n", kind, len(hs), len(f), strings.Join(parts, ", "))
	}
	r.printf("\nThe browser's cookie is a lua-resty-session 4 cookie with cookie storage, sealed as that library does " +
		"(82-byte header, gzip-deflated JSON, AES-256-GCM, base64url) over what lua-resty-openidc keeps for the three headers " +
		"(the ID token's claims, the userinfo answer, the access token and its expiry). The API request is openid-connect " +
		"with bearer_only and use_jwks: Authorization stays, X-Access-Token is the token, X-Userinfo its verified claims.\n\n")
}

func (r *report) clientCost(frameLen, answerLen int, ms []*measurement) {
	r.printf("### The client's own cost\n\n")
	r.printf("The same client, frames (%d bytes) and checks against an in-process echo server answering the runner's "+
		"userinfo + orgsync answer (%d bytes): client + echo server + socket round trip, an upper bound on what the client adds to each call.\n\n", frameLen, answerLen)
	r.printf("| conns | p50 µs | p99 µs | calls/s | client+echo CPU µs/call |\n|---:|---:|---:|---:|---:|\n")
	for i, m := range ms {
		r.printf("| %d | %s | %s | %.0f | %s |\n", connCounts[i], us(m.pct(0.5)), us(m.pct(0.99)), m.throughput(), us(m.clientPerCall()))
	}
	r.printf("\n")
}

var sweepHeader bool

func (r *report) sweepRow(n int, m *measurement, rssIdle, hwm int64, kcCalls int, fellThrough int64, budgetMB int64, largest bool) {
	if !sweepHeader {
		sweepHeader = true
		r.printf("\n### Working-set sweep: distinct users through userinfo + orgsync (cache hit, assertion P-256), 16 connections\n\n")
		r.printf("Synthetic users: tokens from the benchmark's own issuer (EdDSA, published on a local JWKS endpoint named by " +
			"the route's jwks_uri), orgsync entries written to Redis ahead through the cache package's API, so orgsync hits " +
			"without Keycloak. Every user's first call verifies its token (a verdict-cache miss); sizes above 20 000 mint each " +
			"token during the run (the client's minting then shares the CPU and is in the client column).\n\n")
		r.printf("| users | calls | p50 µs | p99 µs | calls/s | runner CPU µs/call | client CPU µs/call | RSS idle MB | RSS after MB | peak RSS MB | budget %d MB | Keycloak calls (cache missed) |\n", budgetMB)
		r.printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	}
	within := "within"
	if hwm > budgetMB<<20 {
		within = "OVER"
	}
	if largest {
		reached := min(n, m.calls)
		line := fmt.Sprintf("resident memory at %d distinct users (working-set sweep, P-256 assertion, 16 connections): peak %s MB (target under %d MB): ", reached, mb(hwm), budgetMB)
		if hwm > budgetMB<<20 {
			line += "NOT met"
		} else {
			line += "met"
		}
		if reached < 1000000 {
			line += " (fewer users than the target's 1 000 000: no verdict on it)"
		}
		r.verdicts = append(r.verdicts, line)
	}
	users := fmt.Sprint(n)
	if m.calls < n {
		users = fmt.Sprintf("%d of %d (time cap)", m.calls, n)
		r.note(fmt.Sprintf("The sweep of %d users reached %d distinct users within its time cap (-sweep-max).", n, m.calls))
	}
	r.printf("| %s | %d | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %d |\n", users, m.calls, us(m.pct(0.5)), us(m.pct(0.99)),
		m.throughput(), us(m.cpuPerCall()), us(m.clientPerCall()), mb(rssIdle), mb(m.rss), mb(hwm), within, kcCalls)
	if fellThrough > 0 {
		r.note(fmt.Sprintf("Sweep of %d users: %d calls missed the seeded cache and asked Keycloak, which does not know "+
			"these synthetic users (401 account_unknown, counted, not failed): a Redis read that failed (timeout) is "+
			"treated as a miss.", n, fellThrough))
	}
}

func (r *report) fleetResult(clients, users int, ttl, dur time.Duration, start time.Time, ms []*measurement, calls, completed map[string][]time.Time, ids []string, proxyErrors int) {
	r.printf("\n### Keycloak calls: 3 runners sharing Redis, %d users\n\n", users)
	known := map[string]bool{}
	for _, id := range ids {
		known[id] = true
	}
	total, worst, over, shortest := windows(calls, known, ttl)
	_, worstDone, overDone, _ := windows(completed, known, ttl)
	var n int
	var tput float64
	var lat []time.Duration
	for _, m := range ms {
		n += m.calls
		tput += m.throughput()
		lat = append(lat, m.lat...)
	}
	slices.Sort(lat)
	all := &measurement{lat: lat}
	periods := float64(dur) / float64(ttl)
	r.printf("%d concurrent clients (connections, spread over the 3 runners, admin-event watcher off) for %s, fresh_ttl %s, after every user's "+
		"entry was invalidated (the first period includes the cold fill). Organization lookups counted by a proxy in front of the real Keycloak; "+
		"two lookups of a user count as one window apart from 3/4 of fresh_ttl on (a value is dated from its load's start, and the proxy sees "+
		"the organizations call after the account call).\n\n",
		clients, dur, ttl)
	gap := "-"
	if shortest >= 0 {
		gap = shortest.Round(time.Millisecond).String()
	}
	r.printf("| calls | calls/s | p50 µs | p99 µs | org lookups | per user per fresh_ttl (mean) | most for one user within 3/4 fresh_ttl | users over 1 | same, answered lookups only | shortest gap between two lookups of a user |\n")
	r.printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	r.printf("| %d | %.0f | %s | %s | %d | %.2f | %d | %d | %d (%d users) | %s |\n\n", n, tput, us(all.pct(0.5)), us(all.pct(0.99)), total,
		float64(total)/(float64(users)*periods), worst, over, worstDone, overDone, gap)
	ok := "met"
	if worst > 1 {
		ok = "NOT met"
	}
	r.printf("Target: at most one organizations call per user per fresh_ttl: %s. Keycloak calls that did not complete "+
		"(the runner gave up on them and cancelled): %d.\n\n", ok, proxyErrors)
}

var propHeader bool

func (r *report) propagationRow(name string, delays []time.Duration, missed int, bound time.Duration) {
	if !propHeader {
		propHeader = true
		r.printf("\n### Propagation: membership change (admin API) to the first upstream request showing it\n\n")
		r.printf("One user, its globex membership added and removed in turn; the request is repeated every 20 ms. " +
			"Time from the admin call's answer to the first answer carrying the change.\n\n")
		r.printf("| settings | changes | p50 ms | p95 ms | max ms | not seen within 45 s | target |\n|---|---:|---:|---:|---:|---:|---|\n")
	}
	s := slices.Clone(delays)
	slices.Sort(s)
	p := func(q float64) string {
		if len(s) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(s[int(q*float64(len(s)-1)+0.5)])/float64(time.Millisecond))
	}
	target := "p95 < 1 s"
	okv := len(s) > 0 && missed == 0 && s[int(0.95*float64(len(s)-1)+0.5)] < time.Second
	if bound > 0 {
		target = fmt.Sprintf("bounded by fresh_ttl (%s)", bound)
		okv = len(s) > 0 && missed == 0 && s[len(s)-1] <= bound+500*time.Millisecond
	}
	verdict := "met"
	if !okv {
		verdict = "NOT met"
	}
	r.printf("| %s | %d | %s | %s | %s | %d | %s: %s |\n", name, len(delays)+missed, p(0.5), p(0.95), p(1), missed, target, verdict)
}

func (r *report) footer(total time.Duration, o *options) {
	mode := "full"
	if o.quick {
		mode = "quick (smoke: figures not meaningful)"
	}
	r.printf("\nRun: %s mode, %s in all.\n", mode, total.Round(time.Second))
}

// procHWM is a process's peak resident set (VmHWM) in bytes.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM")
}

func (r *report) profile(name string, m *measurement, top, cum, path string) {
	r.printf("### Where the runner's CPU goes: %s, 16 connections\n\n", name)
	r.printf("CPU profile of the runner over %s (%d calls, %.0f calls/s, %s µs of runner CPU per call), saved as %s "+
		"(`go tool pprof` it with the runner binary built from the same commit); both listings in full in .work/bench-e2e-cpu-top.txt.\n\n", m.elapsed.Round(time.Millisecond),
		m.calls, m.throughput(), us(m.cpuPerCall()), path)
	if shares := profileShares(cum); shares != "" {
		r.printf("Shares of the runner's CPU samples (cumulative): %s.\n\n", shares)
	}
	r.printf("<details><summary>top functions, flat</summary>\n\n```\n%s```\n</details>\n\n", trimPprof(top))
	r.printf("<details><summary>top functions, cumulative</summary>\n\n```\n%s```\n</details>\n\n", trimPprof(firstLines(cum, 48)))
}

// trimPprof drops pprof's preamble lines (file, build id) but keeps the totals.
func trimPprof(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// windows counts lookups per user: the total, the most of one user within
// any window of 3/4 fresh_ttl, how many users had more than one in a window,
// and the shortest gap between two lookups of a user (-1: none).
func windows(calls map[string][]time.Time, known map[string]bool, ttl time.Duration) (total, worst, over int, shortest time.Duration) {
	shortest = -1
	for id, ts := range calls {
		if !known[id] {
			continue
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		total += len(ts)
		// A value is dated from the start of its load, and the proxy sees
		// the organizations call after the account call, so two loads one
		// fresh_ttl apart can arrive a little closer: docs/reliability.md counts
		// loads as one window apart from 3/4 fresh_ttl on, and so does this.
		most := 0
		for i := range ts {
			j := i
			for j < len(ts) && ts[j].Sub(ts[i]) < ttl*3/4 {
				j++
			}
			most = max(most, j-i)
		}
		worst = max(worst, most)
		if most > 1 {
			over++
		}
		for i := 1; i < len(ts); i++ {
			if g := ts[i].Sub(ts[i-1]); shortest < 0 || g < shortest {
				shortest = g
			}
		}
	}
	return total, worst, over, shortest
}

// profileShares picks, from a `pprof -top -cum` listing, the cumulative share
// of the parts the issue names: the library's request handling, the plugins,
// header access, the socket calls, allocation and the collector.
func profileShares(cum string) string {
	parts := []struct{ label, fn string }{
		{"connection loop", "internal/server.handleConn"},
		{"HTTPReqCall", "internal/plugin.HTTPReqCall"},
		{"userinfo", "plugins/userinfo.(*Plugin).RequestFilter"},
		{"orgsync", "plugins/orgsync.(*Plugin).RequestFilter"},
		{"Request.Header", "internal/http.(*Request).Header"},
		{"answer building (FetchChanges)", "internal/http.(*Request).FetchChanges"},
		{"socket reads", "net.(*conn).Read"},
		{"socket writes", "net.(*conn).Write"},
		{"mallocgc", "runtime.mallocgc"},
		{"GC workers", "runtime.gcBgMarkWorker"},
	}
	var out []string
	for _, p := range parts {
		for _, l := range strings.Split(cum, "\n") {
			f := strings.Fields(l)
			if len(f) == 6 && strings.HasSuffix(f[5], p.fn) {
				out = append(out, fmt.Sprintf("%s %s", p.label, f[4]))
				break
			}
		}
	}
	return strings.Join(out, ", ")
}

func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "")
}
