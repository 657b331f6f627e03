package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestResolveBuild(t *testing.T) {
	vcs := func(rev string, modified bool) []debug.BuildSetting {
		m := "false"
		if modified {
			m = "true"
		}
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: m}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name             string
		version, linkRev string
		bi               *debug.BuildInfo
		want             build
	}{
		{"make build: what make linked in wins", "v1.2.0", "abc", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, false)}, build{"v1.2.0", "go1.26.8", "abc"}},
		{"go install MODULE@VERSION", "dev", "", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main: debug.Module{Version: "v1.3.0"}}, build{"v1.3.0", "go1.26.8", "unknown"}},
		{"go build in a checkout", "dev", "", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, false)}, build{"dev-0123456789ab", "go1.26.8", rev}},
		{"go build in a changed checkout", "dev", "", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, true)}, build{"dev-0123456789ab-dirty", "go1.26.8", rev + "-dirty"}},
		{"make build, revision from the build info", "v1.2.0", "", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, false)}, build{"v1.2.0", "go1.26.8", rev}},
		{"nothing known", "dev", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			build{"dev", runtime.Version(), "unknown"}},
		{"no build info", "dev", "", nil, build{"dev", runtime.Version(), "unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, resolveBuild(tc.version, tc.linkRev, tc.bi))
		})
	}
}

func TestBuildInfoMetric(t *testing.T) {
	exportBuildInfo(build{"v9.9.9", "go1.26.8", "abc"})
	assert.Equal(t, 1.0, testutil.ToFloat64(buildInfoMetric.WithLabelValues("v9.9.9", "go1.26.8", "abc")))
	assert.NoError(t, testutil.CollectAndCompare(buildInfoMetric, strings.NewReader(`
# HELP apisix_identity_build_info Always 1; the labels say which build runs: version, Go version, VCS revision.
# TYPE apisix_identity_build_info gauge
apisix_identity_build_info{goversion="go1.26.8",revision="abc",version="v9.9.9"} 1
`), "apisix_identity_build_info"))
}

// A binary built without make (no -ldflags) reports what its build info holds, as go version -m
// reads it: the module's version (a pseudo-version naming the commit in a clone), else the commit,
// else "dev" (Go stamps no VCS data in a git worktree).
func TestVersionWithoutMakeFallsBackToBuildInfo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "go-runner")
	cmd := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	info, err := exec.Command("go", "version", "-m", bin).Output()
	require.NoError(t, err)
	want := "dev"
	if m := regexp.MustCompile(`(?m)^\s+build\s+vcs\.revision=(\w{12})`).FindSubmatch(info); m != nil {
		want = "dev-" + string(m[1])
		if strings.Contains(string(info), "vcs.modified=true") {
			want += "-dirty"
		}
	}
	if m := regexp.MustCompile(`(?m)^\s+mod\s+\S+\s+(v\S+)`).FindSubmatch(info); m != nil {
		want = string(m[1])
	}
	t.Logf("build info says %s", want)
	out, err = exec.Command(bin, "version").Output()
	require.NoError(t, err)
	assert.Equal(t, "apisix-identity-runner "+want+"\n", string(out))
}
