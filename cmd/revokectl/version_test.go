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
