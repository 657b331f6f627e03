package main

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// revision is set at build time with -ldflags "-X main.revision=..." (make build).
var revision = ""

var buildInfoMetric = promauto.NewGaugeVec(prometheus.GaugeOpts{
	Namespace: "apisix_identity", Name: "build_info",
	Help: "Always 1; the labels say which build runs: version, Go version, VCS revision.",
}, []string{"version", "goversion", "revision"})

// build is what a binary knows of how it was built.
type build struct {
	version, goVersion, revision string
}

// currentBuild is the running binary's build: what make linked in, else the module's build info.
func currentBuild() build {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return resolveBuild(version, revision, bi)
}

// resolveBuild prefers what make linked in (-X main.version, -X main.revision). A binary built
// otherwise (go build in a checkout, go install MODULE@VERSION) falls back to its build info: the
// module's version when it was installed at one, else the VCS revision Go stamped in, else "dev".
func resolveBuild(linkedVersion, linkedRevision string, bi *debug.BuildInfo) build {
	b := build{version: linkedVersion, goVersion: runtime.Version(), revision: linkedRevision}
	var vcsRevision string
	var modified bool
	if bi != nil {
		if bi.GoVersion != "" {
			b.goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRevision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if b.revision == "" {
		b.revision = vcsRevision
		if b.revision != "" && modified {
			b.revision += "-dirty"
		}
	}
	if b.version == "" || b.version == "dev" {
		switch {
		case bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)":
			// go install MODULE@VERSION, or a checkout Go could name a pseudo-version for.
			b.version = bi.Main.Version
		case vcsRevision != "":
			b.version = "dev-" + shortRevision(vcsRevision)
			if modified {
				b.version += "-dirty"
			}
		default:
			b.version = "dev"
		}
	}
	if b.revision == "" {
		b.revision = "unknown"
	}
	return b
}

func shortRevision(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}

// exportBuildInfo sets apisix_identity_build_info for this build.
func exportBuildInfo(b build) {
	buildInfoMetric.WithLabelValues(b.version, b.goVersion, b.revision).Set(1)
}
