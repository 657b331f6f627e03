package deploy

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"
)

const (
	alertRules = "deploy/prometheus/alerts.yaml"
	dashboard  = "deploy/grafana/apisix-identity-runner.json"
)

// metric is one metric the runner registers.
type metric struct {
	histogram bool
	labels    []string
}

// registeredMetrics reads every metrics.go of the repository (Go source,
// not grep) and returns the full names of the Prometheus metrics declared
// there, with their label names. Names are built from the Opts' Namespace,
// Subsystem and Name, whose constants are resolved within the package.
func registeredMetrics(t *testing.T) map[string]metric {
	t.Helper()
	out := map[string]metric{}
	err := filepath.WalkDir(root(t), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root(t) {
			return filepath.SkipDir
		}
		if d.Name() != "metrics.go" {
			return nil
		}
		consts := packageConsts(t, filepath.Dir(path))
		f, err := parser.ParseFile(gotoken.NewFileSet(), path, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			lit, ok := call.Args[0].(*ast.CompositeLit)
			if !ok {
				return true
			}
			sel, ok := lit.Type.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
				return true
			}
			parts := map[string]string{}
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				key := kv.Key.(*ast.Ident).Name
				switch v := kv.Value.(type) {
				case *ast.BasicLit:
					parts[key], _ = strconv.Unquote(v.Value)
				case *ast.Ident:
					parts[key] = consts[v.Name]
				}
			}
			name := strings.Join(slices.DeleteFunc([]string{parts["Namespace"], parts["Subsystem"], parts["Name"]},
				func(s string) bool { return s == "" }), "_")
			m := metric{histogram: sel.Sel.Name == "HistogramOpts"}
			if len(call.Args) > 1 {
				if labels, ok := call.Args[1].(*ast.CompositeLit); ok {
					for _, l := range labels.Elts {
						if b, ok := l.(*ast.BasicLit); ok {
							s, _ := strconv.Unquote(b.Value)
							m.labels = append(m.labels, s)
						}
					}
				}
			}
			require.NotEmpty(t, parts["Name"], "%s: a metric without a resolvable Name", path)
			out[name] = m
			return true
		})
		return nil
	})
	require.NoError(t, err)
	return out
}

// packageConsts collects the string constants of the Go package in dir.
func packageConsts(t *testing.T, dir string) map[string]string {
	t.Helper()
	consts := map[string]string{}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(gotoken.NewFileSet(), filepath.Join(dir, e.Name()), nil, 0)
		require.NoError(t, err)
		for _, decl := range f.Decls {
			g, ok := decl.(*ast.GenDecl)
			if !ok || g.Tok != gotoken.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if b, ok := vs.Values[i].(*ast.BasicLit); ok && b.Kind == gotoken.STRING {
							consts[n.Name], _ = strconv.Unquote(b.Value)
						}
					}
				}
			}
		}
	}
	return consts
}

var (
	metricRef = regexp.MustCompile(`apisix_identity_[a-z0-9_]+`)
	matchers  = regexp.MustCompile(`(apisix_identity_[a-z0-9_]+)\{([^}]*)\}`)
	matcher   = regexp.MustCompile(`([a-zA-Z_]+)\s*(=~|!~|!=|=)`)
	byClause  = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
)

// builtinLabels are added by Prometheus (instance, job) or by histograms (le).
var builtinLabels = []string{"instance", "job", "le"}

// checkExpr: every metric in a PromQL expression exists, with the labels it
// is filtered and grouped by.
func checkExpr(t *testing.T, where, expr string, reg map[string]metric) {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	require.NotEmpty(t, refs, "%s: %s uses no runner metric", where, expr)
	var labels []string
	labels = append(labels, builtinLabels...)
	for _, ref := range refs {
		base := ref
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(ref, suffix); ok {
				if m, exists := reg[b]; exists && m.histogram {
					base = b
				}
			}
		}
		m, ok := reg[base]
		if !assert.True(t, ok, "%s: %s is not a metric the runner registers", where, ref) {
			continue
		}
		labels = append(labels, m.labels...)
	}
	for _, mm := range matchers.FindAllStringSubmatch(expr, -1) {
		for _, l := range matcher.FindAllStringSubmatch(mm[2], -1) {
			assert.Contains(t, labels, l[1], "%s: %s has no label %s", where, mm[1], l[1])
		}
	}
	for _, by := range byClause.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(by[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				assert.Contains(t, labels, l, "%s: grouped by %s, which none of its metrics has", where, l)
			}
		}
	}
}

func TestRegisteredMetricsAreFound(t *testing.T) {
	reg := registeredMetrics(t)
	// One of each package, so that a change in how metrics.go declares them
	// cannot leave this test checking against nothing.
	for _, name := range []string{"apisix_identity_cache_redis_up", "apisix_identity_keycloak_breaker_open",
		"apisix_identity_orgsync_stale_serves_total", "apisix_identity_userinfo_requests_total"} {
		assert.Contains(t, reg, name)
	}
	assert.True(t, reg["apisix_identity_keycloak_request_duration_seconds"].histogram)
	assert.Equal(t, []string{"endpoint", "status"}, reg["apisix_identity_keycloak_requests_total"].labels)
}

func TestAlertRulesUseRegisteredMetrics(t *testing.T) {
	reg := registeredMetrics(t)
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Expr        string
				For         string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, alertRules), &rules))
	require.NotEmpty(t, rules.Groups)
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		require.NotEmpty(t, g.Rules)
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert)
			assert.False(t, seen[r.Alert], "alert %s twice", r.Alert)
			seen[r.Alert] = true
			assert.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
			checkExpr(t, "alert "+r.Alert, r.Expr, reg)
		}
	}
	// What operators asked for: breaker open, stale serves rising, watcher lag, Redis down.
	for _, m := range []string{"apisix_identity_keycloak_breaker_open", "apisix_identity_orgsync_stale_serves_total",
		"apisix_identity_orgsync_event_watcher_lag_seconds", "apisix_identity_cache_redis_up"} {
		assert.Contains(t, string(readFile(t, alertRules)), m)
	}
}

func TestDashboardUsesRegisteredMetrics(t *testing.T) {
	reg := registeredMetrics(t)
	var dash struct {
		Title  string
		UID    string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Query any
			}
		}
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, dashboard), &dash)) // JSON is YAML
	require.NotEmpty(t, dash.Title)
	require.NotEmpty(t, dash.Panels)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, "panel %s", p.Title)
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr, reg)
			for _, m := range metricRef.FindAllString(tg.Expr, -1) {
				used[strings.TrimSuffix(m, "_bucket")] = true
			}
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			for _, m := range metricRef.FindAllString(asString(q["query"]), -1) {
				assert.Contains(t, reg, m, "variable %s", v.Name)
			}
		}
	}
	// Every metric the runner has is on the dashboard.
	for name := range reg {
		assert.True(t, used[name], "the dashboard does not show %s", name)
	}
}

// Runners without REDIS_URL export no redis_up (issue 19): the dashboard must list them anyway
// and must not show their Redis as down.
func TestDashboardWithoutRedis(t *testing.T) {
	var dash struct {
		Panels []struct {
			Title       string
			FieldConfig struct {
				Defaults struct {
					NoValue string `yaml:"noValue"`
				}
			} `yaml:"fieldConfig"`
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Query any
			}
		}
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, dashboard), &dash))
	for _, v := range dash.Templating.List {
		if v.Name == "instance" {
			q, _ := v.Query.(map[string]any)
			assert.Contains(t, asString(q["query"]), "apisix_identity_build_info", "runners are listed by a metric every runner exports")
		}
	}
	found := false
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if strings.Contains(tg.Expr, "apisix_identity_cache_redis_up") {
				found = true
				assert.Equal(t, "not configured", p.FieldConfig.Defaults.NoValue, "panel %s without any redis_up", p.Title)
			}
		}
	}
	assert.True(t, found, "the dashboard shows Redis")
}
