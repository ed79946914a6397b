// Package version is what every Strata binary says it is. The build sets
// Version with -ldflags "-X github.com/strata-infra/strata/pkg/version.Version=...".
package version

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is the release, set at build time ("dev" in a plain go build).
var Version = "dev"

// Info is a binary's version, as `stratactl version` and /v1/version show it.
type Info struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"commit,omitempty"`
}

// Get returns this binary's version.
func Get() Info {
	in := Info{Version: Version, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				in.Commit = s.Value
			}
		}
	}
	return in
}

// BuildInfo is the strata_<component>_build_info gauge: always 1, with the
// version in its labels, the way Prometheus exporters say what runs.
func BuildInfo(component string) prometheus.Collector {
	in := Get()
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "strata_" + component + "_build_info",
		Help:        "Always 1; the labels say which build of strata-" + component + " runs.",
		ConstLabels: prometheus.Labels{"version": in.Version, "goversion": in.GoVersion, "revision": in.Commit},
	}, func() float64 { return 1 })
}
