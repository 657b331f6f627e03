//go:build integration

package integration

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// BenchmarkRunner measures one HTTPReqCall through the real runner binary for
// each plugin chain, and reports it as a ratio of a no-op chain measured in the
// same run (a conf naming a plugin the runner does not have: the runner skips
// it, so that is the protocol floor every plugin pays).
//
//	go test -tags integration -run '^$' -bench BenchmarkRunner ./test/integration/
func BenchmarkRunner(b *testing.B) {
	s := kctest.Env(b)
	e := baseEnv(b, s.URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	e["RUNNER_LOG_LEVEL"] = "warn" // the default: what a benchmark of production should see
	bin := benchBinary(b)
	r, err := apisix.StartRunner(apisix.RunnerOptions{Binary: bin, Args: []string{"run"}, Env: e.list()})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Stop()
	gw := apisix.NewGateway(r.Socket())
	defer gw.Close()

	user := kctest.CreateUser(b, "bench")
	kctest.AddMember(b, "acme", user.ID)
	sess := kctest.Login(b, user.Username, user.Password)
	h := http.Header{}
	for k, v := range headersOf(sess) {
		h.Set(k, v)
	}
	ui := apisix.PluginConf{Name: "userinfo", Value: `{"issuer":"` + s.Issuer + `","assertion":{"audience":"mitxonline"}}`}
	chains := []struct {
		name  string
		route *apisix.Route
	}{
		{"noop", newRoute(apisix.PluginConf{Name: "not-a-plugin", Value: "{}"})},
		{"userinfo", newRoute(ui)},
		{"userinfo+orgsync", newRoute(ui, apisix.PluginConf{Name: "orgsync", Value: `{"fresh_ttl":"1h","stale_ttl":"2h"}`})},
	}
	var floor float64
	for _, c := range chains {
		b.Run(c.name, func(b *testing.B) {
			req := &apisix.Request{Method: http.MethodGet, Path: "/app", Header: h}
			// Warm: conf token, verdict cache, organization cache, route learning.
			for i := 0; i < 5; i++ {
				res, err := gw.Do(context.Background(), c.route, req)
				if err != nil || res.Status != 200 {
					b.Fatalf("warm-up: %v %+v", err, res)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := gw.Do(context.Background(), c.route, req); err != nil {
					b.Fatal(err)
				}
			}
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if c.name == "noop" {
				floor = perOp
			} else if floor > 0 {
				b.ReportMetric(perOp/floor, "x_noop")
			}
		})
	}
}

var (
	benchOnce sync.Once
	benchBin  string
)

// benchBinary is the runner built without the race detector, which the
// tests' binary has and which would distort the timings.
func benchBinary(b *testing.B) string {
	benchOnce.Do(func() {
		benchBin = filepath.Join(filepath.Dir(runnerBinary), "go-runner-bench")
		cmd := exec.Command("go", "build", "-o", benchBin, "./cmd/go-runner")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("building the runner: %v\n%s", err, out)
		}
	})
	return benchBin
}
