package main

import (
	"strings"
	"testing"
)

// revokectl --version (and -version, version) prints one line: the version, the VCS
// revision and the Go version, and exits 0 without needing NATS.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "-version", "version"} {
		r := cli(t, "", arg).want(t, exitOK)
		if !strings.HasPrefix(r.stdout, "revokectl version ") || !strings.Contains(r.stdout, ", revision ") ||
			strings.Count(r.stdout, "\n") != 1 || r.stderr != "" {
			t.Errorf("%s: stdout %q, stderr %q", arg, r.stdout, r.stderr)
		}
	}
	if r := cli(t, "", "--help").want(t, exitOK); !strings.Contains(r.stdout, "revokectl --version") {
		t.Error("--help does not mention --version")
	}
}

// A snapshot's builder field names the build as --version does (internal/buildinfo, the
// ldflags version included), not a second reading of the Go build info.
func TestSnapshotBuilderIsTheVersion(t *testing.T) {
	line := strings.TrimSpace(cli(t, "", "--version").want(t, exitOK).stdout)
	rest, ok := strings.CutPrefix(line, "revokectl version ")
	version, rest, ok2 := strings.Cut(rest, ", revision ")
	revision, _, ok3 := strings.Cut(rest, ", ")
	if !ok || !ok2 || !ok3 {
		t.Fatalf("--version %q", line)
	}
	if b, want := builder(), "revokectl "+version+" ("+revision+") on "; !strings.HasPrefix(b, want) {
		t.Errorf("builder %q, want it to start with %q", b, want)
	}
}
