package deploy

import (
	"bufio"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// `make release` builds static linux/amd64 and linux/arm64 binaries that
// carry their version, and SHA256SUMS for them. (The image part needs a
// Docker engine, which CI does not have; it says so and succeeds.)
func TestMakeRelease(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is not installed")
	}
	dist := t.TempDir()
	const version = "v9.9.9-release-test"
	cmd := exec.Command("make", "release", "DIST="+dist, "VERSION="+version)
	cmd.Dir = root(t)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	sums := readSums(t, filepath.Join(dist, "SHA256SUMS"))
	require.Len(t, sums, len(machines), "one sum per binary")
	for arch, machine := range machines {
		name := "go-runner-" + version + "-linux-" + arch
		path := filepath.Join(dist, name)
		t.Run(arch, func(t *testing.T) {
			f, err := elf.Open(path)
			require.NoError(t, err)
			defer f.Close()
			assert.Equal(t, machine, f.Machine)
			for _, p := range f.Progs {
				assert.NotEqual(t, elf.PT_INTERP, p.Type, "a dynamic loader is requested: not static")
			}
			libs, _ := f.ImportedLibraries()
			assert.Empty(t, libs, "links shared libraries")

			info, err := buildinfo.ReadFile(path)
			require.NoError(t, err)
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			assert.Equal(t, "0", settings["CGO_ENABLED"])
			assert.Equal(t, "true", settings["-trimpath"])
			assert.Equal(t, arch, settings["GOARCH"])

			b, err := os.ReadFile(path)
			require.NoError(t, err)
			// -trimpath leaves -ldflags out of the build info: look for the version itself.
			assert.Contains(t, string(b), version, "the version is linked in")
			sum := sha256.Sum256(b)
			assert.Equal(t, hex.EncodeToString(sum[:]), sums[name], "SHA256SUMS")

			if runtime.GOOS == "linux" && runtime.GOARCH == arch {
				out, err := exec.Command(path, "version").Output()
				require.NoError(t, err)
				assert.Equal(t, "apisix-identity-runner "+version+"\n", string(out))
			}
		})
	}
	assert.Contains(t, string(out), "release-image", "the image step runs (or says why it cannot)")
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		require.Len(t, fields, 2, "line %q", sc.Text())
		sums[strings.TrimPrefix(fields[1], "*")] = fields[0]
	}
	require.NoError(t, sc.Err())
	return sums
}

// make run says, in one line, how to drive the runner without APISIX and what orgsync routes
// answer without Keycloak; what it points at exists.
func TestMakeRunSaysHowToDriveIt(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	cmd := exec.Command("make", "-n", "run")
	cmd.Dir = root(t)
	out, err := cmd.Output()
	require.NoError(t, err)
	var echoes []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "echo ") {
			echoes = append(echoes, line)
		}
	}
	require.Len(t, echoes, 1, "%s", out)
	assert.Contains(t, echoes[0], "without APISIX")
	assert.Contains(t, echoes[0], "without KEYCLOAK_URL orgsync routes answer 500")
	assert.FileExists(t, filepath.Join(root(t), "test/apisix/example_test.go"))
	assert.Contains(t, string(readFile(t, "test/apisix/example_test.go")), "apisix.NewGateway")
}
