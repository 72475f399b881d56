package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFrom(t *testing.T) {
	stamped := func(version string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/revoked-dev/revoked", Version: version}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	tests := map[string]struct {
		version, revision string // -ldflags -X
		bi                *debug.BuildInfo
		want              Info
	}{
		"make build":            {"v1.2.3-4-gabcdef0", "abcdef0123", stamped("(devel)", "vcs.revision", "abcdef0123", "vcs.modified", "false"), Info{"v1.2.3-4-gabcdef0", "abcdef0123", "go1.99.1"}},
		"dirty tree":            {"", "", stamped("(devel)", "vcs.revision", "abcdef0123", "vcs.modified", "true"), Info{"devel", "abcdef0123-dirty", "go1.99.1"}},
		"go install @version":   {"", "", stamped("v1.2.3"), Info{"v1.2.3", Unknown, "go1.99.1"}},
		"ldflags version wins":  {"v2.0.0", "", stamped("v1.2.3"), Info{"v2.0.0", Unknown, "go1.99.1"}},
		"-buildvcs=false":       {"v2.0.0", "abcdef0123", stamped("(devel)"), Info{"v2.0.0", "abcdef0123", "go1.99.1"}},
		"stamped revision wins": {"", "0000000", stamped("(devel)", "vcs.revision", "abcdef0123"), Info{"devel", "abcdef0123", "go1.99.1"}},
		"no build info at all":  {"", "", nil, Info{"devel", Unknown, runtime.Version()}},
	}
	for name, tc := range tests {
		if got := from(tc.version, tc.revision, tc.bi); got != tc.want {
			t.Errorf("%s: %+v, want %+v", name, got, tc.want)
		}
	}
}

func TestLineAndCollector(t *testing.T) {
	i := Info{Version: "v1.2.3", Revision: "abc", GoVersion: "go1.99.1"}
	if got, want := i.Line("revokectl"), "revokectl version v1.2.3, revision abc, go1.99.1"; got != want {
		t.Errorf("Line: %q, want %q", got, want)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(i.Collector())
	want := `# HELP revoked_build_info The build of revoked that is running: its version, VCS revision and Go version; always 1.
# TYPE revoked_build_info gauge
revoked_build_info{goversion="go1.99.1",revision="abc",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "revoked_build_info"); err != nil {
		t.Error(err)
	}
	// The running test binary has build info: Get fills every label.
	if g := Get(); g.Version == "" || g.Revision == "" || g.GoVersion != runtime.Version() {
		t.Errorf("Get: %+v", g)
	}
}
