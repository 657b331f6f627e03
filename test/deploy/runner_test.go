package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logtest"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
)

// startRunner starts the real runner binary as APISIX would (APISIX sets
// APISIX_LISTEN_ADDRESS and APISIX_CONF_EXPIRE_TIME), with exactly the given
// variables. It is stopped with SIGTERM when the test ends.
func startRunner(t *testing.T, vars map[string]string) *runnerProc {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "runner.sock")
	cmd := exec.Command(runnerBinary(t), "run")
	cmd.Env = []string{"APISIX_LISTEN_ADDRESS=unix:" + sock, "APISIX_CONF_EXPIRE_TIME=3600"}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	proc := &runnerProc{out: out, done: done}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return proc
}

type runnerProc struct {
	out  *logtest.Buffer
	done chan struct{}
}

// waitHealthy waits for url to answer 200, and fails at once when the runner exits.
func (p *runnerProc) waitHealthy(t *testing.T, url string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- waitHTTP(url, 20*time.Second) }()
	select {
	case err := <-errc:
		require.NoError(t, err, "runner output:\n%s", p.out)
	case <-p.done:
		t.Fatalf("the runner exited:\n%s", p.out)
	}
}

// The runner starts with the environment docker-compose.yml gives it: every
// value parses, the signing key loads, the metrics and health listener comes
// up. Only what cannot exist here is swapped: the secret's path inside the
// container and the metrics port. Redis and Keycloak hosts do not resolve
// outside compose; the runner starts anyway (cache in-process, Keycloak later).
func TestRunnerStartsWithComposeEnvironment(t *testing.T) {
	p := loadCompose(t)
	s := p.Services[apisixService]
	vars := map[string]string{}
	listed := map[string]bool{}
	for _, v := range configurableVars(t) {
		listed[v] = true
	}
	for k, v := range env(s) {
		if listed[k] { // what nginx_config.envs passes on
			vars[k] = v
		}
	}
	name := strings.TrimPrefix(vars["RUNNER_SIGNING_KEY_FILE"], "/run/secrets/")
	require.Contains(t, p.Secrets, name)
	vars["RUNNER_SIGNING_KEY_FILE"] = p.Secrets[name].File
	addr := freeAddr(t)
	vars["RUNNER_METRICS_ADDR"] = addr

	proc := startRunner(t, vars)
	proc.waitHealthy(t, "http://"+addr+"/healthz")

	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotContains(t, proc.out.String(), "bad configuration")
	assert.NotContains(t, proc.out.String(), vars["KEYCLOAK_CLIENT_SECRET"], "the runner logged a secret")
}

// conf/apisix-healthcheck.sh, the apisix container's health check: healthy
// only when APISIX's status API and the runner's /healthz both answer 200.
// APISIX cannot run here: its status API is played by a local listener,
// only to give the script a 200 and a 503 to read; the runner is the real one.
func TestApisixHealthcheckScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	script := repoPath(t, "conf/apisix-healthcheck.sh")
	st, err := os.Stat(script)
	require.NoError(t, err)
	assert.NotZero(t, st.Mode()&0o111, "the script must be executable")

	var notReady atomic.Bool
	status := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status/ready" {
			http.NotFound(w, r)
			return
		}
		if notReady.Load() {
			http.Error(w, `{"status":"error"}`, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer status.Close()
	statusAddr := strings.TrimPrefix(status.URL, "http://")

	metrics := freeAddr(t)
	run := func(vars ...string) (int, string) {
		cmd := exec.Command("bash", script)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, vars...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		require.NoError(t, err)
		return 0, string(out)
	}

	code, out := run("APISIX_STATUS_ADDR="+statusAddr, "RUNNER_METRICS_ADDR="+metrics)
	assert.Equal(t, 1, code, "runner not started yet: %s", out)

	startRunner(t, map[string]string{"RUNNER_METRICS_ADDR": metrics}).waitHealthy(t, "http://"+metrics+"/healthz")
	code, out = run("APISIX_STATUS_ADDR="+statusAddr, "RUNNER_METRICS_ADDR="+metrics)
	assert.Equal(t, 0, code, out)

	// The compose file sets 0.0.0.0:PORT: the script asks 127.0.0.1.
	_, port, _ := strings.Cut(metrics, ":")
	code, out = run("APISIX_STATUS_ADDR="+statusAddr, "RUNNER_METRICS_ADDR=0.0.0.0:"+port)
	assert.Equal(t, 0, code, out)

	notReady.Store(true)
	code, out = run("APISIX_STATUS_ADDR="+statusAddr, "RUNNER_METRICS_ADDR="+metrics)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "503")

	notReady.Store(false)
	code, out = run("APISIX_STATUS_ADDR="+freeAddr(t), "RUNNER_METRICS_ADDR="+metrics)
	assert.Equal(t, 1, code, "APISIX down: %s", out)

	// The status address the script defaults to is the one config.yaml sets.
	c := loadYAML(t, configYAML)
	apisix, _ := c["apisix"].(map[string]any)
	st2, _ := apisix["status"].(map[string]any)
	assert.Equal(t, "127.0.0.1", st2["ip"])
	assert.Equal(t, 7085, st2["port"])
	assert.Contains(t, string(readFile(t, "conf/apisix-healthcheck.sh")), "127.0.0.1:7085")
}

// On `apisix reload` the new runner starts while the old one still holds
// RUNNER_METRICS_ADDR. Both must serve the protocol (APISIX would otherwise
// answer 503 until it respawns the new one 3 s later); the second logs the
// busy address once and takes the address over when the first one exits.
func TestTwoRunnersShareAMetricsAddress(t *testing.T) {
	addr := freeAddr(t)
	start := func() *apisix.Runner {
		r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: runnerBinary(t), Args: []string{"run"},
			Env: []string{"RUNNER_METRICS_ADDR=" + addr}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Stop() })
		return r
	}
	jwks := &apisix.Route{ID: "jwks", Conf: []apisix.PluginConf{{Name: "userinfo", Value: `{"jwks":true}`}}}
	serves := func(r *apisix.Runner) {
		t.Helper()
		g := apisix.NewGateway(r.Socket())
		defer g.Close()
		res, err := g.Do(context.Background(), jwks, &apisix.Request{Path: "/.well-known/identity-assertion/jwks.json"})
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		assert.Contains(t, string(res.Body), `"keys"`)
	}

	first := start()
	require.NoError(t, waitHTTP("http://"+addr+"/healthz", 10*time.Second))
	second := start()
	serves(first)
	serves(second)
	select {
	case <-second.Exited():
		t.Fatalf("the second runner exited:\n%s", second.Output())
	case <-time.After(time.Second): // a few retries of the listener
	}
	assert.Equal(t, 1, strings.Count(second.Output(), "RUNNER_METRICS_ADDR is busy"), second.Output())

	require.NoError(t, first.Stop())
	require.NoError(t, waitHTTP("http://"+addr+"/healthz", 5*time.Second), "the second runner took the address over")
	assert.Contains(t, second.Output(), "metrics listener up")
	serves(second)
	require.NoError(t, second.Stop())
}

// RUNNER_LOG_FILE: the JSON lines go to the file (one line in APISIX's
// error.log says where), and SIGHUP reopens it after a rotation.
func TestRunnerLogFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "runner.log")
	r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: runnerBinary(t), Args: []string{"run"},
		Env: []string{"RUNNER_LOG_FILE=" + path, "RUNNER_LOG_LEVEL=info"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Stop() })

	assert.Contains(t, r.Output(), "go-runner logs to RUNNER_LOG_FILE")
	assert.NotContains(t, r.Output(), "go-runner started", "stdout (error.log) has only the pointer to the file")
	first := jsonLines(t, path)
	assert.Contains(t, messages(first), "go-runner started")

	require.NoError(t, os.Rename(path, path+".1"))
	require.NoError(t, syscall.Kill(r.Pid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		_, err := os.Stat(path)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "SIGHUP reopens the file at its path")
	require.NoError(t, r.Stop())

	assert.NotContains(t, messages(jsonLines(t, path+".1")), "go-runner stopped")
	after := messages(jsonLines(t, path))
	assert.Contains(t, after, "RUNNER_LOG_FILE reopened")
	assert.Contains(t, after, "go-runner stopped")
}

func TestRunnerLogFileUnwritableStopsTheRunner(t *testing.T) {
	cmd := exec.Command(runnerBinary(t), "run")
	cmd.Env = []string{"APISIX_LISTEN_ADDRESS=unix:" + filepath.Join(t.TempDir(), "r.sock"),
		"RUNNER_LOG_FILE=" + filepath.Join(t.TempDir(), "no-such-dir", "runner.log")}
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "RUNNER_LOG_FILE")
}

// A stray SIGHUP (no log file to reopen) must not kill the runner: APISIX
// would answer 503 until it respawns one.
func TestRunnerSurvivesSIGHUP(t *testing.T) {
	r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: runnerBinary(t), Args: []string{"run"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Stop() })
	require.NoError(t, syscall.Kill(r.Pid(), syscall.SIGHUP))
	select {
	case <-r.Exited():
		t.Fatalf("SIGHUP stopped the runner:\n%s", r.Output())
	case <-time.After(500 * time.Millisecond):
	}
	require.NoError(t, r.Stop())
}

// jsonLines reads a log file; every line must be one JSON object.
func jsonLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), "not a JSON line: %q", line)
		out = append(out, m)
	}
	return out
}

func messages(lines []map[string]any) []string {
	var out []string
	for _, l := range lines {
		out = append(out, asString(l["msg"]))
	}
	return out
}

// RUNNER_PPROF=1 serves all of net/http/pprof on the metrics listener;
// without it none of it is there.
func TestRunnerPprof(t *testing.T) {
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	on := freeAddr(t)
	startRunner(t, map[string]string{"RUNNER_METRICS_ADDR": on, "RUNNER_PPROF": "1"}).waitHealthy(t, "http://"+on+"/healthz")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol",
		"/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=0.2", "/debug/pprof/heap",
		"/debug/pprof/goroutine?debug=1", "/debug/pprof/allocs", "/debug/pprof/block", "/debug/pprof/mutex",
		"/debug/pprof/threadcreate"} {
		code, body := get("http://" + on + path)
		assert.Equal(t, http.StatusOK, code, "%s: %.200s", path, body)
	}
	_, cmdline := get("http://" + on + "/debug/pprof/cmdline")
	assert.Contains(t, cmdline, "run")

	off := freeAddr(t)
	startRunner(t, map[string]string{"RUNNER_METRICS_ADDR": off}).waitHealthy(t, "http://"+off+"/healthz")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		code, _ := get("http://" + off + path)
		assert.Equal(t, http.StatusNotFound, code, path)
	}

	cmd := exec.Command(runnerBinary(t), "run")
	cmd.Env = []string{"APISIX_LISTEN_ADDRESS=unix:" + filepath.Join(t.TempDir(), "r.sock"),
		"RUNNER_METRICS_ADDR=" + freeAddr(t), "RUNNER_PPROF=yes"}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "a bad RUNNER_PPROF stops the runner")
	assert.Contains(t, string(out), "RUNNER_PPROF")
}

// The command line operators and CI pipelines use, with its exit codes.
func TestRunnerCommandLine(t *testing.T) {
	run := func(args ...string) (int, string) {
		cmd := exec.Command(runnerBinary(t), args...)
		cmd.Dir = root(t)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		require.NoError(t, err)
		return 0, string(out)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out := run(args...)
		assert.Equal(t, 0, code, "%v", args)
		assert.Equal(t, "apisix-identity-runner deploy-test\n", out, "%v", args)
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, out := run(args...)
		assert.Equal(t, 0, code, "%v", args)
		assert.Contains(t, out, "usage: go-runner", "%v", args)
	}
	code, _ := run()
	assert.Equal(t, 2, code, "no command")
	code, _ = run("serve")
	assert.Equal(t, 2, code, "unknown command")

	code, out := run("check", "-config", configYAML, apisixYAML)
	assert.Equal(t, 0, code, out)
	bad := filepath.Join(t.TempDir(), "route.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"uri":"/*","plugins":{"ext-plugin-post-req":{"conf":[{"name":"usrinfo","value":"{}"}]}}}`), 0o600))
	code, out = run("check", bad)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, `no plugin "usrinfo"`)
	code, _ = run("check", filepath.Join(t.TempDir(), "missing.yaml"))
	assert.Equal(t, 2, code)
}
