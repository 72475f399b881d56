// Package buildinfo says which build of revoked is running: its version, the VCS
// revision Go stamped into the binary, and the Go version that built it. `revoked`,
// `revoked ingest` and `revokectl` print it on --version, and both subcommands of
// `revoked` export it on /metrics as revoked_build_info{version,revision,goversion} 1.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is the release version, set at build time (make build sets it from
// `git describe --always --dirty`):
//
//	go build -ldflags "-X github.com/revoked-dev/revoked/internal/buildinfo.Version=v1.2.3"
//
// Empty, the module version Go records (`go install ...@v1.2.3`) is used, or "devel".
var Version string

// Revision is the VCS commit, set at build time like Version (make build sets it from
// `git rev-parse HEAD`) for builds where Go records none: -buildvcs=false, or a
// Docker build without .git. The revision Go records wins.
var Revision string

// Unknown is the revision of a binary built without VCS information (go test, or a
// build outside a git checkout).
const Unknown = "unknown"

// Info is one build's identity.
type Info struct {
	Version   string // Version, the module version, or "devel"
	Revision  string // the VCS commit, with "-dirty" when the tree had changes; Unknown without one
	GoVersion string // the Go release that built the binary, e.g. go1.26.0
}

// Get returns the running binary's build info.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return from(Version, Revision, bi)
}

// from derives the Info from the ldflags version and revision and what Go stamped
// into the binary.
func from(version, revision string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if info.Revision == "" {
		info.Revision = Unknown
	}
	if bi == nil {
		if info.Version == "" {
			info.Version = "devel"
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	stamped, modified := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			stamped = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if stamped != "" {
		info.Revision = stamped
		if modified {
			info.Revision += "-dirty"
		}
	}
	return info
}

// Line is what --version prints for program: one line with the version, the revision
// and the Go version.
func (i Info) Line(program string) string {
	return fmt.Sprintf("%s version %s, revision %s, %s", program, i.Version, i.Revision, i.GoVersion)
}

// Collector is the gauge revoked_build_info{version,revision,goversion}, always 1:
// joined with another series (`* on(instance) group_left(version)`), it says which
// build produced it. prometheus's collectors.NewBuildInfoCollector names other labels
// (path, version, checksum) and ignores the ldflags version.
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "revoked_build_info",
		Help: "The build of revoked that is running: its version, VCS revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{
			"version":   i.Version,
			"revision":  i.Revision,
			"goversion": i.GoVersion,
		},
	})
	g.Set(1)
	return g
}
