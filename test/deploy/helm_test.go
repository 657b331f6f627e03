package deploy

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"
)

const helmValues = "deploy/helm/values.yaml"

// chartKeys are the keys of the apache/apisix chart's values.yaml (chart
// "apisix" for APISIX 3.x) that deploy/helm/values.yaml may set, as the
// chart's templates read them: ext-plugin.cmd from apisix.extPlugin,
// nginx_config.envs from apisix.nginx.envs, the pod's extras from extra*.
// No helm binary or chart copy is available here, so this list is the
// contract; a key outside it would be silently ignored by the chart.
var chartKeys = []string{
	"image.repository", "image.tag",
	"apisix.extPlugin.enabled", "apisix.extPlugin.cmd",
	"apisix.nginx.envs", "apisix.nginx.logs.errorLogLevel",
	"podAnnotations", "podSecurityContext", "resources",
	"extraEnvVars", "extraVolumes", "extraVolumeMounts", "extraInitContainers", "extraDeploy",
}

// HelmValues is the part of the values file the tests read.
type HelmValues struct {
	Image  struct{ Repository, Tag string }
	APISIX struct {
		ExtPlugin struct {
			Enabled bool
			Cmd     []string
		} `yaml:"extPlugin"`
		Nginx struct {
			Envs []string
			Logs struct {
				ErrorLogLevel string `yaml:"errorLogLevel"`
			}
		}
	} `yaml:"apisix"`
	PodSecurityContext struct {
		FSGroup int `yaml:"fsGroup"`
	} `yaml:"podSecurityContext"`
	ExtraEnvVars []struct {
		Name      string
		Value     *string
		ValueFrom *struct {
			SecretKeyRef *struct{ Name, Key string } `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"extraEnvVars"`
	ExtraVolumes        []helmVolume  `yaml:"extraVolumes"`
	ExtraVolumeMounts   []volumeMount `yaml:"extraVolumeMounts"`
	ExtraInitContainers []struct {
		Name         string
		Image        string
		Command      []string
		VolumeMounts []volumeMount `yaml:"volumeMounts"`
	} `yaml:"extraInitContainers"`
}

type helmVolume struct {
	Name     string
	EmptyDir map[string]any `yaml:"emptyDir"`
	Secret   *struct {
		SecretName string `yaml:"secretName"`
		Items      []struct{ Key, Path string }
	}
}

type volumeMount struct {
	Name      string
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

func loadHelmValues(t *testing.T) HelmValues {
	t.Helper()
	var v HelmValues
	require.NoError(t, yaml.Unmarshal(readFile(t, helmValues), &v))
	return v
}

// leafPaths lists the dotted paths of a values document down to the chart's
// keys: maps are walked, anything else (lists, scalars) ends a path.
func leafPaths(prefix string, v any, out *[]string) {
	m, ok := v.(map[string]any)
	if !ok || slices.Contains(chartKeys, prefix) {
		*out = append(*out, prefix)
		return
	}
	for k, e := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		leafPaths(p, e, out)
	}
}

func TestHelmValuesUseOnlyChartKeys(t *testing.T) {
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(readFile(t, helmValues), &doc))
	var paths []string
	leafPaths("", doc, &paths)
	require.NotEmpty(t, paths)
	for _, p := range paths {
		assert.Contains(t, chartKeys, p, "%s is not a key of the apache/apisix chart this file relies on", p)
	}
}

func TestHelmValuesRunTheRunner(t *testing.T) {
	v := loadHelmValues(t)
	assert.Regexp(t, `^apache/apisix$`, v.Image.Repository, "the official image, unchanged")
	d := parseDockerfile(t, repoPath(t, dockerfile))
	assert.Equal(t, "apache/apisix:"+v.Image.Tag, d.stages["apisix"], "the APISIX version the Dockerfile builds on")

	require.True(t, v.APISIX.ExtPlugin.Enabled)
	cmd := v.APISIX.ExtPlugin.Cmd
	require.Len(t, cmd, 2)
	assert.Equal(t, "run", cmd[1])
	assert.Equal(t, "warn", v.APISIX.Nginx.Logs.ErrorLogLevel, "the runner's lines reach error.log at warn")

	// The binary: an init container copies it into an emptyDir that APISIX mounts where cmd points.
	mounts := map[string]volumeMount{}
	for _, m := range v.ExtraVolumeMounts {
		mounts[m.Name] = m
		assert.True(t, m.ReadOnly, "APISIX mounts %s read-only", m.Name)
	}
	var binVolume string
	for name, m := range mounts {
		if filepath.Dir(cmd[0]) == m.MountPath {
			binVolume = name
		}
	}
	require.NotEmpty(t, binVolume, "no volume is mounted at %s", filepath.Dir(cmd[0]))
	isEmptyDir := slices.ContainsFunc(v.ExtraVolumes, func(vol helmVolume) bool {
		return vol.Name == binVolume && vol.EmptyDir != nil
	})
	assert.True(t, isEmptyDir, "volume %s is an emptyDir", binVolume)
	require.Len(t, v.ExtraInitContainers, 1)
	ic := v.ExtraInitContainers[0]
	require.Len(t, ic.VolumeMounts, 1)
	assert.Equal(t, binVolume, ic.VolumeMounts[0].Name)
	require.Len(t, ic.Command, 3)
	assert.Equal(t, []string{"cp", "/go-runner", ic.VolumeMounts[0].MountPath + "/" + filepath.Base(cmd[0])}, ic.Command)
	assert.Contains(t, d.stages, "runner", "the Dockerfile's runner target makes the init container's image")
	assert.Contains(t, strings.Join(d.lines, "\n"), "/go-runner /go-runner", "the runner target holds /go-runner")
	assert.Equal(t, 636, v.PodSecurityContext.FSGroup, "the apisix user (uid 636) reads the Secret's files through fsGroup")
}

// nginx passes the runner only what apisix.nginx.envs lists; every
// variable set is one the runner reads, and secrets come from the Secret.
func TestHelmValuesEnvironment(t *testing.T) {
	v := loadHelmValues(t)
	runnerVars := configurableVars(t)
	secretMounts := map[string]bool{}
	for _, vol := range v.ExtraVolumes {
		if vol.Secret != nil {
			for _, m := range v.ExtraVolumeMounts {
				if m.Name == vol.Name {
					for _, it := range vol.Secret.Items {
						secretMounts[m.MountPath+"/"+it.Path] = true
					}
				}
			}
		}
	}
	set := map[string]bool{}
	for _, e := range v.ExtraEnvVars {
		set[e.Name] = true
		assert.Contains(t, runnerVars, e.Name, "extraEnvVars sets %s, which the runner does not read", e.Name)
		assert.Contains(t, v.APISIX.Nginx.Envs, e.Name, "%s is set but not in apisix.nginx.envs: it never reaches the runner", e.Name)
		if strings.Contains(e.Name, "SECRET") && !strings.HasSuffix(e.Name, "_FILE") {
			require.NotNil(t, e.ValueFrom, "%s must come from a Secret", e.Name)
			require.NotNil(t, e.ValueFrom.SecretKeyRef, "%s must come from a Secret", e.Name)
		}
		if strings.HasSuffix(e.Name, "_FILE") {
			require.NotNil(t, e.Value)
			assert.True(t, secretMounts[*e.Value], "%s=%s is not a file of the mounted Secret", e.Name, *e.Value)
		}
	}
	for _, name := range v.APISIX.Nginx.Envs {
		assert.True(t, set[name], "apisix.nginx.envs lists %s, which extraEnvVars does not set", name)
	}
	for _, name := range setByAPISIX {
		assert.False(t, set[name], "APISIX sets %s itself", name)
	}
	assert.True(t, set["KEYCLOAK_URL"] && set["REDIS_URL"] && set["RUNNER_SIGNING_KEY_FILE"])
	// Every secret_env of the repository's routes is passed.
	for _, r := range loadRoutes(t).Routes {
		if name := asString(extConfValue(t, r, "orgsync")["secret_env"]); name != "" {
			assert.True(t, set[name], "route %s needs %s", r.ID, name)
		}
	}
}

// The runner starts with the environment of the values file: files of the
// Secret and secretKeyRef values are test stand-ins, the metrics port is free.
func TestRunnerStartsWithHelmEnvironment(t *testing.T) {
	v := loadHelmValues(t)
	dir := t.TempDir()
	keyPEM := readFile(t, "conf/demo-keys/assertion-signing-key.demo.pem")
	vars := map[string]string{}
	for _, e := range v.ExtraEnvVars {
		switch {
		case e.Value != nil && strings.HasSuffix(e.Name, "_FILE"):
			local := filepath.Join(dir, filepath.Base(*e.Value))
			content := []byte("helm-test-secret-of-32-bytes-or-more")
			if strings.HasSuffix(local, ".pem") {
				content = keyPEM
			}
			require.NoError(t, os.WriteFile(local, content, 0o600))
			vars[e.Name] = local
		case e.Value != nil:
			vars[e.Name] = *e.Value
		default:
			vars[e.Name] = "helm-test-" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	addr := freeAddr(t)
	vars["RUNNER_METRICS_ADDR"] = addr
	proc := startRunner(t, vars)
	proc.waitHealthy(t, "http://"+addr+"/healthz")
	assert.NotContains(t, proc.out.String(), "bad configuration")
	assert.NotContains(t, proc.out.String(), "helm-test-secret", "the runner logged a secret")
}

// The pod's resources are set: the runner runs in APISIX's container, so the memory limit holds
// the runner's budget (RUNNER_MEMORY_LIMIT's default, unless the values set it) and APISIX's.
func TestHelmValuesResources(t *testing.T) {
	var v struct {
		Resources struct {
			Requests map[string]string
			Limits   map[string]string
		}
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, helmValues), &v))
	assert.NotEmpty(t, v.Resources.Requests["cpu"], "resources.requests.cpu")
	request := mebibytes(t, v.Resources.Requests["memory"])
	limit := mebibytes(t, v.Resources.Limits["memory"])
	const runnerBudget, apisixShare = 224, 256 // MiB: RUNNER_MEMORY_LIMIT's default; nginx's workers
	assert.GreaterOrEqual(t, limit, runnerBudget+apisixShare, "the memory limit holds the runner's budget and APISIX")
	assert.GreaterOrEqual(t, limit, request)
	for _, e := range loadHelmValues(t).ExtraEnvVars {
		assert.NotEqual(t, "RUNNER_MEMORY_LIMIT", e.Name, "a RUNNER_MEMORY_LIMIT here must be weighed against resources.limits.memory")
	}
	assert.NotContains(t, v.Resources.Limits, "cpu", "no CPU limit: throttling stalls every request of the pod")
}

// mebibytes reads a Kubernetes memory quantity in Mi or Gi.
func mebibytes(t *testing.T, q string) int {
	t.Helper()
	n, unit := 0, ""
	_, err := fmt.Sscanf(q, "%d%s", &n, &unit)
	require.NoError(t, err, "memory quantity %q", q)
	switch unit {
	case "Mi":
		return n
	case "Gi":
		return n << 10
	}
	require.Failf(t, "memory quantity", "%q: want Mi or Gi", q)
	return 0
}

// kube-prometheus-stack ignores prometheus.io/* annotations: extraDeploy holds a PodMonitor that
// selects the chart's pods by its selector labels and scrapes the runner's port and path, the same
// as the annotations and RUNNER_METRICS_ADDR say.
func TestHelmValuesPodMonitor(t *testing.T) {
	var v struct {
		PodAnnotations map[string]string `yaml:"podAnnotations"`
		ExtraDeploy    []struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string
			Metadata   struct {
				Name   string
				Labels map[string]string
			}
			Spec struct {
				Selector struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				}
				PodMetricsEndpoints []struct {
					Port        string
					Path        string
					Relabelings []struct {
						SourceLabels []string `yaml:"sourceLabels"`
						TargetLabel  string   `yaml:"targetLabel"`
						Replacement  string
					}
				} `yaml:"podMetricsEndpoints"`
			}
		} `yaml:"extraDeploy"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, helmValues), &v))
	require.Len(t, v.ExtraDeploy, 1)
	pm := v.ExtraDeploy[0]
	assert.Equal(t, "monitoring.coreos.com/v1", pm.APIVersion)
	assert.Equal(t, "PodMonitor", pm.Kind)
	assert.Contains(t, pm.Metadata.Name, `{{ include "apisix.fullname" . }}`, "named after the release (extraDeploy is rendered with tpl)")
	assert.NotEmpty(t, pm.Metadata.Labels["release"], "kube-prometheus-stack selects PodMonitors by its release label")
	// The chart's apisix.selectorLabels.
	assert.Equal(t, map[string]string{"app.kubernetes.io/name": `{{ include "apisix.name" . }}`,
		"app.kubernetes.io/instance": "{{ .Release.Name }}"}, pm.Spec.Selector.MatchLabels)
	require.Len(t, pm.Spec.PodMetricsEndpoints, 1)
	ep := pm.Spec.PodMetricsEndpoints[0]
	assert.Equal(t, "http", ep.Port, "a port the chart's container declares")
	assert.Equal(t, v.PodAnnotations["prometheus.io/path"], ep.Path)

	var metricsAddr string
	for _, e := range loadHelmValues(t).ExtraEnvVars {
		if e.Name == "RUNNER_METRICS_ADDR" && e.Value != nil {
			metricsAddr = *e.Value
		}
	}
	_, port, err := net.SplitHostPort(metricsAddr)
	require.NoError(t, err, "RUNNER_METRICS_ADDR %q", metricsAddr)
	assert.Equal(t, port, v.PodAnnotations["prometheus.io/port"])
	rewritten := false
	for _, r := range ep.Relabelings {
		if r.TargetLabel == "__address__" {
			rewritten = true
			assert.Equal(t, []string{"__meta_kubernetes_pod_ip"}, r.SourceLabels)
			assert.Equal(t, "$1:"+port, r.Replacement, "the runner's port, RUNNER_METRICS_ADDR's")
		}
	}
	assert.True(t, rewritten, "the target's address is rewritten to the runner's port")
}
