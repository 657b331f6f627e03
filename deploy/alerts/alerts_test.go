package alerts

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	ruleFile = "../prometheus/alerts.yaml"
	// Every scenario is an hour of samples, one a minute, evaluated once a minute (promtool's default
	// evaluation_interval).
	minutes = 60
	step    = time.Minute
)

// mode is how a runner is deployed: with or without REDIS_URL, with the admin event watcher or
// without (KEYCLOAK_EVENTS_INTERVAL=0s, or no Keycloak).
type mode struct{ redis, watcher bool }

func (m mode) String() string {
	return fmt.Sprintf("redis=%t,watcher=%t", m.redis, m.watcher)
}

var modes = []mode{{true, true}, {true, false}, {false, true}, {false, false}}

// series is a runner's metrics: a series selector without the instance label -> its values in
// promtool's expanding notation ("0+30x60": 0, 30, ... for 61 samples; "_x60": absent).
type series map[string]string

// healthy is what a runner exports in mode m under ordinary traffic (10 identities a second, 1 %
// of them expired tokens), as the runner registers its metrics: redis_up only with REDIS_URL, the
// watcher's poll results at 0 from the start. leader is the runner that holds the watcher's lease.
func healthy(m mode, leader bool) series {
	flat := fmt.Sprintf("0x%d", minutes)
	rising := func(perMinute int) string { return fmt.Sprintf("0+%dx%d", perMinute, minutes) }
	s := series{
		`apisix_identity_keycloak_breaker_open`:                                                flat,
		`apisix_identity_orgsync_stale_serves_total`:                                           flat,
		`apisix_identity_orgsync_keycloak_unavailable_total`:                                   flat,
		`apisix_identity_orgsync_event_watcher_lag_seconds`:                                    flat,
		`apisix_identity_orgsync_event_watcher_polls_total{result="ok"}`:                       flat,
		`apisix_identity_orgsync_event_watcher_polls_total{result="error"}`:                    flat,
		`apisix_identity_orgsync_event_watcher_polls_total{result="not_leader"}`:               flat,
		`apisix_identity_cache_redis_values_rejected_total{reason="mac"}`:                      flat,
		`apisix_identity_cache_revocations_evicted_total`:                                      flat,
		`apisix_identity_cache_revocations_stored_total{result="pending"}`:                     flat,
		`apisix_identity_userinfo_requests_total{outcome="verified"}`:                          rising(600),
		`apisix_identity_userinfo_requests_total{outcome="misconfigured"}`:                     flat,
		`apisix_identity_userinfo_verification_failures_total{reason="expired"}`:               rising(6),
		`apisix_identity_userinfo_config_errors_total`:                                         flat,
		`apisix_identity_orgsync_requests_total{outcome="cache"}`:                              rising(500),
		`apisix_identity_orgsync_requests_total{outcome="misconfigured"}`:                      flat,
		`apisix_identity_orgsync_config_errors_total`:                                          flat,
		`apisix_identity_keycloak_request_duration_seconds_bucket{endpoint="user",le="0.025"}`: flat,
		`apisix_identity_keycloak_request_duration_seconds_bucket{endpoint="user",le="0.05"}`:  rising(60),
		`apisix_identity_keycloak_request_duration_seconds_bucket{endpoint="user",le="1"}`:     rising(60),
		`apisix_identity_keycloak_request_duration_seconds_bucket{endpoint="user",le="2.5"}`:   rising(60),
		`apisix_identity_keycloak_request_duration_seconds_bucket{endpoint="user",le="+Inf"}`:  rising(60),
	}
	if m.redis {
		s[`apisix_identity_cache_redis_up`] = fmt.Sprintf("1x%d", minutes)
		s[`apisix_identity_cache_revocations_stored_total{result="shared"}`] = rising(1)
	} else {
		s[`apisix_identity_cache_revocations_stored_total{result="local"}`] = rising(1)
	}
	if m.watcher {
		// KEYCLOAK_EVENTS_INTERVAL=2s: 30 polls a minute, by the holder; the others stand by.
		if leader {
			s[`apisix_identity_orgsync_event_watcher_polls_total{result="ok"}`] = rising(30)
			s[`apisix_identity_orgsync_event_watcher_lag_seconds`] = fmt.Sprintf("1x%d", minutes)
		} else {
			s[`apisix_identity_orgsync_event_watcher_polls_total{result="not_leader"}`] = rising(30)
		}
	}
	return s
}

// fleet is the input of a scenario: the runners' series by instance.
type fleet map[string]series

// load is the fleet in promtool's "load" notation.
func (f fleet) load() string {
	var b strings.Builder
	fmt.Fprintf(&b, "load %s\n", model.Duration(step))
	for _, instance := range slices.Sorted(maps.Keys(f)) {
		for _, sel := range slices.Sorted(maps.Keys(f[instance])) {
			name, matchers, _ := strings.Cut(strings.TrimSuffix(sel, "}"), "{")
			all := fmt.Sprintf(`instance=%q,job="apisix-identity-runner"`, instance)
			if matchers != "" {
				all = matchers + "," + all
			}
			fmt.Fprintf(&b, "  %s{%s} %s\n", name, all, f[instance][sel])
		}
	}
	return b.String()
}

// rule is an alerting rule as Prometheus loads it (rulefmt validates the file as Prometheus does).
type rule struct {
	name string
	expr string
	hold time.Duration // for:
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile(ruleFile, false, model.UTF8Validation, p, nil)
	require.Empty(t, errs, "%s does not load", ruleFile)
	var out []rule
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "%s: recording rules are not tested here", r.Record)
			require.Zero(t, r.KeepFiringFor, "%s: keep_firing_for is not modelled here", r.Alert)
			out = append(out, rule{name: r.Alert, expr: r.Expr, hold: time.Duration(r.For)})
		}
	}
	require.NotEmpty(t, out)
	return out
}

// sample is one float sample of a loaded series.
type sample struct {
	t int64
	f float64
}

func (s sample) T() int64                      { return s.t }
func (s sample) ST() int64                     { return 0 }
func (s sample) F() float64                    { return s.f }
func (s sample) H() *histogram.Histogram       { return nil }
func (s sample) FH() *histogram.FloatHistogram { return nil }
func (s sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s sample) Copy() chunks.Sample           { return s }

// memory is the fleet's series in memory, for PromQL's engine to query.
type memory []storage.Series

func (f fleet) storage(t *testing.T) memory {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	var out memory
	for _, line := range strings.Split(strings.TrimSpace(f.load()), "\n")[1:] {
		lset, values, err := p.ParseSeriesDesc(strings.TrimSpace(line))
		require.NoError(t, err, line)
		var samples []chunks.Sample
		for i, v := range values {
			if !v.Omitted {
				samples = append(samples, sample{t: int64(i) * step.Milliseconds(), f: v.Value})
			}
		}
		out = append(out, storage.NewListSeries(lset, samples))
	}
	slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return out
}

func (m memory) Querier(int64, int64) (storage.Querier, error) {
	return &storage.MockQuerier{SelectMockFunction: func(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
		var set seriesSet
		for _, s := range m {
			if matchAll(s.Labels(), ms) {
				set.series = append(set.series, s)
			}
		}
		return &set
	}}, nil
}

func matchAll(l labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                      { s.i++; return s.i <= len(s.series) }
func (s *seriesSet) At() storage.Series              { return s.series[s.i-1] }
func (*seriesSet) Err() error                        { return nil }
func (*seriesSet) Warnings() annotations.Annotations { return nil }

// firing evaluates every rule once a minute over the scenario's hour, as a rule group does, and
// returns the alerts firing after each evaluation: minute -> "Alert{instance}" names. An alert is
// pending from the first evaluation its expression returns its labels, firing once it has been
// for the rule's "for", and gone at the first evaluation that does not return them (Prometheus'
// rules.AlertingRule.Eval without keep_firing_for).
func firing(t *testing.T, f fleet) [][]string {
	t.Helper()
	db := f.storage(t)
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	alerting := loadRules(t)
	active := make([]map[string]time.Time, len(alerting)) // rule -> instance -> active since
	out := make([][]string, minutes+1)
	ctx := context.Background()
	for m := 0; m <= minutes; m++ {
		ts := time.Unix(0, 0).UTC().Add(time.Duration(m) * step)
		for i, r := range alerting {
			q, err := engine.NewInstantQuery(ctx, db, nil, r.expr, ts)
			require.NoError(t, err, r.name)
			res := q.Exec(ctx)
			require.NoError(t, res.Err, "%s at %dm", r.name, m)
			vec, err := res.Vector()
			require.NoError(t, err, "%s at %dm", r.name, m)
			now := map[string]time.Time{}
			for _, s := range vec {
				instance := s.Metric.Get("instance")
				since, ok := active[i][instance]
				if !ok {
					since = ts
				}
				now[instance] = since
				if ts.Sub(since) >= r.hold {
					out[m] = append(out[m], r.name+"{"+instance+"}")
				}
			}
			active[i] = now
			q.Close()
		}
		slices.Sort(out[m])
		out[m] = slices.Compact(out[m])
	}
	return out
}

// twoRunners is a healthy fleet of two runners in mode m; r1 holds the watcher's lease.
func twoRunners(m mode) fleet {
	return fleet{"r1": healthy(m, true), "r2": healthy(m, false)}
}

// A healthy runner pages nobody, whatever its mode: without REDIS_URL (issue 19: RedisDown fired
// on every such runner), without the watcher, and right after start.
func TestHealthyFleetIsSilent(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			for minute, alerts := range firing(t, twoRunners(m)) {
				assert.Empty(t, alerts, "at %dm", minute)
			}
		})
	}
}

// A runner as it starts: no traffic yet, nothing has moved.
func TestIdleRunnerIsSilent(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			s := healthy(m, true)
			for sel, v := range s {
				if strings.HasPrefix(v, "0+") {
					s[sel] = fmt.Sprintf("0x%d", minutes)
				}
			}
			for minute, alerts := range firing(t, fleet{"r1": s}) {
				assert.Empty(t, alerts, "at %dm", minute)
			}
		})
	}
}

// scenario is one fault on r1 of a healthy fleet from minute 10: the series it changes, the
// modes it can happen in, the one alert it must raise, when it must fire and when it must still fire.
type scenario struct {
	name    string
	alert   string // fires for r1, or fleet-wide (no instance label) when fleet is true
	fleet   bool
	only    func(mode) bool
	changes series
	// everywhere changes every runner of the fleet.
	everywhere series
	firesBy    int   // minute by which the alert fires
	holds      []int // minutes at which it must still fire
}

func withRedis(m mode) bool   { return m.redis }
func withWatcher(m mode) bool { return m.watcher }

// from10 is a series unchanged for the first ten minutes (before), then after (61 samples in all).
func from10(before, after string) string {
	return fmt.Sprintf("%sx9 %sx%d", before, after, minutes-10)
}

var scenarios = []scenario{
	{
		name: "Keycloak's breaker opens", alert: "IdentityRunnerKeycloakBreakerOpen",
		changes: series{`apisix_identity_keycloak_breaker_open`: from10("0", "1")},
		firesBy: 12, holds: []int{30, 60},
	},
	{
		name: "stale lists served, 0.2 a second", alert: "IdentityRunnerStaleServesRising",
		changes: series{`apisix_identity_orgsync_stale_serves_total`: from10("0", "0+12")},
		firesBy: 26, holds: []int{60},
	},
	{
		name: "neither Keycloak nor a cached list", alert: "IdentityRunnerKeycloakUnavailable",
		changes: series{`apisix_identity_orgsync_keycloak_unavailable_total`: from10("0", "0+5")},
		firesBy: 17, holds: []int{60},
	},
	{
		name: "admin events two minutes late", alert: "IdentityRunnerWatcherLagging", fleet: true, only: withWatcher,
		changes: series{`apisix_identity_orgsync_event_watcher_lag_seconds`: from10("1", "120")},
		firesBy: 16, holds: []int{60},
	},
	{
		// Issue 19: view-events missing from day one. No poll ever succeeds; ok stays at 0.
		name: "the watcher never succeeds", alert: "IdentityRunnerWatcherFailing", fleet: true, only: withWatcher,
		changes: series{
			`apisix_identity_orgsync_event_watcher_polls_total{result="ok"}`:    fmt.Sprintf("0x%d", minutes),
			`apisix_identity_orgsync_event_watcher_polls_total{result="error"}`: fmt.Sprintf("0+30x%d", minutes),
		},
		firesBy: 16, holds: []int{60},
	},
	{
		// The same from runners that export no ok series before their first success.
		name: "the watcher never succeeds, no ok series", alert: "IdentityRunnerWatcherFailing", fleet: true, only: withWatcher,
		changes: series{
			`apisix_identity_orgsync_event_watcher_polls_total{result="error"}`: fmt.Sprintf("0+30x%d", minutes),
		},
		everywhere: series{`apisix_identity_orgsync_event_watcher_polls_total{result="ok"}`: fmt.Sprintf("_x%d", minutes)},
		firesBy:    16, holds: []int{60},
	},
	{
		name: "the watcher starts failing", alert: "IdentityRunnerWatcherFailing", fleet: true, only: withWatcher,
		changes: series{
			`apisix_identity_orgsync_event_watcher_polls_total{result="ok"}`:    from10("0+30", "270"),
			`apisix_identity_orgsync_event_watcher_polls_total{result="error"}`: from10("0", "0+30"),
		},
		firesBy: 26, holds: []int{60},
	},
	{
		name: "Redis stops answering", alert: "IdentityRunnerRedisDown", only: withRedis,
		changes: series{`apisix_identity_cache_redis_up`: from10("1", "0")},
		firesBy: 12, holds: []int{60},
	},
	{
		name: "forged values in Redis", alert: "IdentityRunnerRedisValuesForged", only: withRedis,
		changes: series{`apisix_identity_cache_redis_values_rejected_total{reason="mac"}`: from10("0", "0+1")},
		firesBy: 11, holds: []int{60},
	},
	{
		name: "revocations evicted", alert: "IdentityRunnerRevocationsEvicted",
		changes: series{`apisix_identity_cache_revocations_evicted_total`: from10("0", "0+10")},
		firesBy: 11, holds: []int{60},
	},
	{
		name: "revocations not shared", alert: "IdentityRunnerRevocationsNotShared", only: withRedis,
		changes: series{`apisix_identity_cache_revocations_stored_total{result="pending"}`: from10("0", "0+1")},
		firesBy: 11, holds: []int{60},
	},
	{
		name: "10 % of identities fail verification", alert: "IdentityRunnerVerificationFailuresHigh",
		changes: series{`apisix_identity_userinfo_verification_failures_total{reason="expired"}`: from10("0+6", "54+60")},
		firesBy: 26, holds: []int{60},
	},
	{
		// Issue 19: the conf is parsed once (then cached), the route answers 500 to every request after.
		name: "a refused userinfo conf keeps its route answering 500", alert: "IdentityRunnerRouteConfigRefused",
		changes: series{
			`apisix_identity_userinfo_config_errors_total`:                     from10("0", "1"),
			`apisix_identity_userinfo_requests_total{outcome="misconfigured"}`: from10("0", "0+60"),
		},
		firesBy: 10, holds: []int{25, 40, 60},
	},
	{
		name: "a refused orgsync conf keeps its route answering 500", alert: "IdentityRunnerRouteConfigRefused",
		changes: series{
			`apisix_identity_orgsync_config_errors_total`:                     from10("0", "1"),
			`apisix_identity_orgsync_requests_total{outcome="misconfigured"}`: from10("0", "0+60"),
		},
		firesBy: 10, holds: []int{25, 40, 60},
	},
	{
		name: "Keycloak answers in 2 s", alert: "IdentityRunnerKeycloakSlow", fleet: true,
		changes: series{
			`apisix_identity_keycloak_request_duration_seconds_bucket{endpoint="user",le="0.05"}`: from10("0+60", "540"),
			`apisix_identity_keycloak_request_duration_seconds_bucket{endpoint="user",le="1"}`:    from10("0+60", "540"),
		},
		firesBy: 26, holds: []int{60},
	},
}

// Every alert fires on its scenario, in every mode the scenario can happen in, by when it should,
// keeps firing while the fault lasts, and nothing else fires; nothing fires before the fault.
func TestEveryAlertFiresOnItsScenario(t *testing.T) {
	for _, sc := range scenarios {
		for _, m := range modes {
			if sc.only != nil && !sc.only(m) {
				continue
			}
			t.Run(sc.name+"/"+m.String(), func(t *testing.T) {
				t.Parallel()
				f := twoRunners(m)
				for _, s := range f {
					maps.Copy(s, sc.everywhere)
				}
				maps.Copy(f["r1"], sc.changes)
				want := sc.alert + "{r1}"
				if sc.fleet {
					want = sc.alert + "{}"
				}
				got := firing(t, f)
				for minute := 0; minute <= minutes; minute++ {
					switch {
					case minute < 10:
						assert.Empty(t, got[minute], "before the fault, at %dm", minute)
					case minute >= sc.firesBy:
						assert.Equal(t, []string{want}, got[minute], "at %dm", minute)
					default:
						for _, a := range got[minute] {
							assert.Equal(t, want, a, "at %dm", minute)
						}
					}
				}
				for _, minute := range sc.holds {
					assert.Contains(t, got[minute], want, "still firing at %dm", minute)
				}
			})
		}
	}
}

// Every rule of the file has a scenario above: a new rule comes with its own.
func TestEveryAlertHasAScenario(t *testing.T) {
	covered := map[string]bool{}
	for _, sc := range scenarios {
		covered[sc.alert] = true
	}
	for _, r := range loadRules(t) {
		assert.True(t, covered[r.name], "%s has no scenario that fires it", r.name)
	}
}

// A refused conf no request reaches is still reported, once, for the 10 minutes after the parse.
func TestRefusedConfWithoutTrafficIsReported(t *testing.T) {
	f := twoRunners(mode{redis: true, watcher: true})
	f["r1"][`apisix_identity_userinfo_config_errors_total`] = from10("0", "1")
	got := firing(t, f)
	assert.Equal(t, []string{"IdentityRunnerRouteConfigRefused{r1}"}, got[12])
	assert.Empty(t, got[30], "no request answered 500: the alert ends with its window")
}

// The watcher's hand-over is not a failure: the holder fails, another runner takes over and
// succeeds within the same five minutes.
func TestWatcherHandOverIsSilent(t *testing.T) {
	f := twoRunners(mode{redis: true, watcher: true})
	f["r1"][`apisix_identity_orgsync_event_watcher_polls_total{result="ok"}`] = from10("0+30", "270")
	f["r1"][`apisix_identity_orgsync_event_watcher_polls_total{result="error"}`] = "0x9 0+30x2 60x47"
	f["r2"][`apisix_identity_orgsync_event_watcher_polls_total{result="ok"}`] = "0x11 0+30x48"
	for minute, alerts := range firing(t, f) {
		assert.Empty(t, alerts, "at %dm", minute)
	}
}
