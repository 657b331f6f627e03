package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"
)

// dockerfileInfo is what the tests read from a Dockerfile: its instructions
// (continuation lines joined), ARG defaults, and stages with their base image.
type dockerfileInfo struct {
	lines  []string
	args   map[string]string
	stages map[string]string // stage name -> base image, ARGs expanded
	bases  []string
}

func parseDockerfile(t testing.TB, path string) dockerfileInfo {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	d := dockerfileInfo{args: map[string]string{}, stages: map[string]string{}}
	sc := bufio.NewScanner(f)
	var cur string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur += s + " "
			continue
		}
		d.lines = append(d.lines, cur+line)
		cur = ""
	}
	require.NoError(t, sc.Err())
	argRe := regexp.MustCompile(`\$\{?(\w+)\}?`)
	for _, l := range d.lines {
		fields := strings.Fields(l)
		switch strings.ToUpper(fields[0]) {
		case "ARG":
			if k, v, ok := strings.Cut(fields[1], "="); ok {
				if _, seen := d.args[k]; !seen {
					d.args[k] = v
				}
			}
		case "FROM":
			image := argRe.ReplaceAllStringFunc(fields[1], func(m string) string {
				return d.args[argRe.FindStringSubmatch(m)[1]]
			})
			d.bases = append(d.bases, image)
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				d.stages[fields[3]] = image
			}
		}
	}
	return d
}

func TestDockerfileBaseImagesArePinned(t *testing.T) {
	d := parseDockerfile(t, repoPath(t, dockerfile))
	require.NotEmpty(t, d.bases)
	for _, image := range d.bases {
		if image == "scratch" {
			continue
		}
		if _, stage := d.stages[image]; stage {
			continue
		}
		checkPinned(t, image)
	}
	assert.Contains(t, d.stages, "apisix")
	assert.Contains(t, d.stages, "upstream")
	assert.Regexp(t, `^apache/apisix:3\.\d+\.\d+-debian$`, d.stages["apisix"], "official APISIX 3.x image, exact version")
}

// The Go image must be at least the go directive of go.mod, or the build
// would have to download a toolchain (or fail).
func TestDockerfileGoVersionBuildsTheModule(t *testing.T) {
	d := parseDockerfile(t, repoPath(t, dockerfile))
	mf, err := modfile.Parse("go.mod", readFile(t, "go.mod"), nil)
	require.NoError(t, err)
	require.NotNil(t, mf.Go)
	var image string
	for _, b := range d.bases {
		if strings.HasPrefix(b, "golang:") {
			image = b
		}
	}
	require.NotEmpty(t, image, "no golang build stage")
	m := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(image)
	require.NotNil(t, m, "golang image %s has no version tag", image)
	want := strings.SplitN(mf.Go.Version, ".", 3)
	require.GreaterOrEqual(t, len(want), 2)
	have := [2]int{atoi(t, m[1]), atoi(t, m[2])}
	need := [2]int{atoi(t, want[0]), atoi(t, want[1])}
	assert.True(t, have[0] > need[0] || have[0] == need[0] && have[1] >= need[1],
		"%s is older than go.mod's go %s", image, mf.Go.Version)
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}

func TestDockerfileBuildsTheRunner(t *testing.T) {
	text := strings.Join(parseDockerfile(t, repoPath(t, dockerfile)).lines, "\n")
	assert.Contains(t, text, "./cmd/go-runner")
	assert.Contains(t, text, "-trimpath")
	assert.Contains(t, text, "-X main.version=")
	assert.Contains(t, text, "./demo/upstream")
}

// The Dockerfile copies only some folders into the build: they must hold every
// package of this module the two binaries import, and every COPY source must exist.
func TestDockerfileCopiesEveryPackageTheBinariesNeed(t *testing.T) {
	d := parseDockerfile(t, repoPath(t, dockerfile))
	var copied []string
	for _, l := range d.lines {
		fields := strings.Fields(l)
		if !strings.EqualFold(fields[0], "COPY") || strings.Contains(l, "--from=") {
			continue
		}
		var srcs []string
		for _, f := range fields[1:] {
			if !strings.HasPrefix(f, "--") {
				srcs = append(srcs, f)
			}
		}
		for _, src := range srcs[:len(srcs)-1] {
			_, err := os.Stat(repoPath(t, src))
			assert.NoError(t, err, "COPY %s", src)
			copied = append(copied, strings.TrimSuffix(strings.TrimPrefix(src, "./"), "/"))
		}
	}
	if slices.Contains(copied, ".") {
		return
	}
	mf, err := modfile.Parse("go.mod", readFile(t, "go.mod"), nil)
	require.NoError(t, err)
	// A replace by a local directory (the patched runner library) is part of
	// the build too.
	for _, r := range mf.Replace {
		if dir, ok := strings.CutPrefix(r.New.Path, "./"); ok {
			covered := false
			for _, c := range copied {
				if dir == c || strings.HasPrefix(dir, c+"/") {
					covered = true
				}
			}
			assert.True(t, covered, "replace directory %s is not copied into the build stage", r.New.Path)
		}
	}
	module := mf.Module.Mod.Path
	cmd := exec.Command(goTool(), "list", "-deps", "-f", "{{.ImportPath}}", "./cmd/go-runner", "./demo/upstream")
	cmd.Dir = root(t)
	out, err := cmd.Output()
	require.NoError(t, err)
	for _, pkg := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(pkg, module+"/")
		if !ok {
			continue
		}
		covered := false
		for _, c := range copied {
			if rel == c || strings.HasPrefix(rel, c+"/") {
				covered = true
			}
		}
		assert.True(t, covered, "package %s is not copied into the build stage", rel)
	}
}

// This module builds the runner's packages from the checkout, but the root
// go.mod's replace directives apply only there: each must be mirrored here,
// or these tests would build the plugins against an unpatched dependency.
func TestModuleMirrorsTheRootReplaces(t *testing.T) {
	parse := func(rel string) *modfile.File {
		b := readFile(t, rel)
		f, err := modfile.Parse(rel, b, nil)
		require.NoError(t, err)
		return f
	}
	rootMod, ours := parse("go.mod"), parse("test/deploy/go.mod")
	mirrored := map[string]string{}
	for _, r := range ours.Replace {
		mirrored[r.Old.Path] = r.New.Path
	}
	for _, r := range rootMod.Replace {
		want := r.New.Path
		if modfile.IsDirectoryPath(want) {
			want = "../../" + strings.TrimPrefix(want, "./")
		}
		assert.Equal(t, want, mirrored[r.Old.Path], "root go.mod replaces %s: test/deploy/go.mod must too", r.Old.Path)
	}
	assert.Equal(t, "../..", mirrored[rootMod.Module.Mod.Path], "test/deploy builds the runner from this checkout")
}
