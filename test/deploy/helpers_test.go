package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/routecheck"
)

// Paths of the deployment files, relative to the repository root.
const (
	composeFile    = "docker-compose.yml"
	dockerfile     = "Dockerfile"
	configYAML     = "conf/config.yaml"
	apisixYAML     = "conf/apisix.yaml"
	runnerPath     = "/usr/local/apisix/go-runner" // where the Dockerfile puts the runner
	projectName    = "apisix-identity-runner"
	apisixService  = "apisix"
	postReq        = "ext-plugin-post-req"
	serviceHealthy = "service_healthy"
)

// setByAPISIX are the runner variables APISIX sets itself when it starts the
// runner: they must not be in nginx_config.envs.
var setByAPISIX = []string{"APISIX_LISTEN_ADDRESS", "APISIX_CONF_EXPIRE_TIME"}

// root is the repository root (two levels above this file).
func root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func repoPath(t testing.TB, rel string) string {
	return filepath.Join(root(t), filepath.FromSlash(rel))
}

func readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, rel))
	require.NoError(t, err)
	return b
}

// loadCompose reads docker-compose.yml with the compose-spec loader, with an
// empty environment so that the ${VAR:-default} values are the committed ones.
func loadCompose(t testing.TB) *types.Project {
	t.Helper()
	return loadComposeWith(t, types.Mapping{})
}

// loadComposeWith reads docker-compose.yml as `docker compose` does in a
// shell whose environment is environ.
func loadComposeWith(t testing.TB, environ types.Mapping) *types.Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  root(t),
		ConfigFiles: []types.ConfigFile{{Filename: repoPath(t, composeFile)}},
		Environment: environ,
	}, func(o *loader.Options) { o.SetProjectName(projectName, true) })
	require.NoError(t, err, "compose file does not load")
	return p
}

// env returns a service's environment; a variable without a value is "".
func env(s types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			out[k] = *v
		} else {
			out[k] = ""
		}
	}
	return out
}

func loadYAML(t testing.TB, rel string) map[string]any {
	t.Helper()
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(readFile(t, rel), &doc), rel)
	require.NotNil(t, doc, rel)
	return doc
}

// Route is the part of an APISIX route these tests read.
type Route struct {
	ID         string         `yaml:"id"`
	URI        string         `yaml:"uri"`
	Methods    []string       `yaml:"methods"`
	Priority   int            `yaml:"priority"`
	UpstreamID string         `yaml:"upstream_id"`
	Upstream   map[string]any `yaml:"upstream"`
	Plugins    map[string]any `yaml:"plugins"`
}

// ExtPlugin is the config of ext-plugin-pre-req, -post-req and -post-resp.
type ExtPlugin struct {
	Conf []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"conf"`
	AllowDegradation *bool `yaml:"allow_degradation"`
}

// StandaloneConfig is conf/apisix.yaml.
type StandaloneConfig struct {
	Routes    []Route `yaml:"routes"`
	Upstreams []struct {
		ID    string         `yaml:"id"`
		Nodes map[string]int `yaml:"nodes"`
	} `yaml:"upstreams"`
}

// loadRoutes reads conf/apisix.yaml with its ${{VAR:=default}} references
// resolved to the defaults, the values the compose file passes by default.
func loadRoutes(t testing.TB) StandaloneConfig {
	t.Helper()
	return loadRoutesWith(t, func(string) string { return "" })
}

// loadRoutesWith reads conf/apisix.yaml as APISIX does in an environment
// given by getenv.
func loadRoutesWith(t testing.TB, getenv func(string) string) StandaloneConfig {
	t.Helper()
	doc, err := routecheck.Decode(readFile(t, apisixYAML))
	require.NoError(t, err)
	doc, err = routecheck.ExpandVars(doc, getenv)
	require.NoError(t, err)
	b, err := yaml.Marshal(doc)
	require.NoError(t, err)
	var c StandaloneConfig
	require.NoError(t, yaml.Unmarshal(b, &c))
	require.NotEmpty(t, c.Routes)
	return c
}

// keycloakPlaceholder is Keycloak's ${VAR} / ${VAR:default} in a realm file,
// resolved from the Keycloak process's environment on import.
var keycloakPlaceholder = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}`)

// expandRealm resolves the realm file's placeholders as Keycloak does with
// environment env (a placeholder with neither is left as it is).
func expandRealm(b []byte, env map[string]string) []byte {
	return keycloakPlaceholder.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := keycloakPlaceholder.FindSubmatch(m)
		if v, ok := env[string(sub[1])]; ok && v != "" {
			return []byte(v)
		}
		if sub[2] != nil {
			return sub[2]
		}
		return m
	})
}

// extPlugin decodes one of the route's ext-plugin-* configs.
func extPlugin(t testing.TB, r Route, name string) (*ExtPlugin, bool) {
	t.Helper()
	raw, ok := r.Plugins[name]
	if !ok {
		return nil, false
	}
	b, err := yaml.Marshal(raw)
	require.NoError(t, err)
	var p ExtPlugin
	require.NoError(t, yaml.Unmarshal(b, &p), "route %s: %s", r.ID, name)
	return &p, true
}

// pluginConf decodes a route's plugin config as a map.
func pluginConf(r Route, name string) map[string]any {
	m, _ := r.Plugins[name].(map[string]any)
	return m
}

// extConfValue decodes the JSON value of the named runner plugin on the route's
// post-req list (nil when absent).
func extConfValue(t testing.TB, r Route, plugin string) map[string]any {
	t.Helper()
	p, ok := extPlugin(t, r, postReq)
	if !ok {
		return nil
	}
	for _, c := range p.Conf {
		if c.Name == plugin {
			var v map[string]any
			require.NoError(t, json.Unmarshal([]byte(c.Value), &v), "route %s: %s value", r.ID, plugin)
			return v
		}
	}
	return nil
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// runnerBinary builds cmd/go-runner once per test run, as the Dockerfile does.
func runnerBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "deploy-go-runner-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "go-runner")
		cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags", "-X main.version=deploy-test", "-o", binPath, "./cmd/go-runner")
		cmd.Dir = root(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/go-runner: %w\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// runnerEnvVars is what `go-runner env` prints: every variable the runner reads.
func runnerEnvVars(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command(runnerBinary(t), "env").Output()
	require.NoError(t, err)
	var vars []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if v := strings.TrimSpace(sc.Text()); v != "" {
			vars = append(vars, v)
		}
	}
	require.NotEmpty(t, vars, "go-runner env printed nothing")
	for _, v := range setByAPISIX {
		require.Contains(t, vars, v, "go-runner env no longer lists %s: update setByAPISIX", v)
	}
	return vars
}

// configurableVars are the runner variables an operator sets (all but APISIX's own).
func configurableVars(t testing.TB) []string {
	t.Helper()
	return slices.DeleteFunc(runnerEnvVars(t), func(v string) bool { return slices.Contains(setByAPISIX, v) })
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// waitHTTP polls url until it answers 200 or the deadline passes.
func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return errors.Join(fmt.Errorf("%s did not answer 200 within %s", url, timeout), last)
}
