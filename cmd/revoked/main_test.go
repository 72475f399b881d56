package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// Both subcommands list their flags on --help (stdout, exit 0), and refuse a bad
// command line with one message on stderr and exit 2, before starting anything.
func TestCommandLine(t *testing.T) {
	help := map[string]struct {
		args []string
		want []string
	}{
		"revoked": {[]string{"--help"}, []string{"Usage: revoked [flags]", "revoked ingest [flags]", "REVOKED_NATS_URL",
			"-grpc-addr", "-http-addr", "-admin-addr", "-nats-url", "-stream", "-jwks-file", "-jwks-url", "-jwks-refresh",
			"-hmac-secret-file", "-issuer", "-audience", "-leeway", "-max-token-lifetime", "-max-staleness", "-stale-policy",
			"-cutoff-claim", "-log-level", "-dev", "-shutdown-delay", "-shutdown-timeout", "-version", `(default "127.0.0.1:9191")`, "(default 10s)", "(default 24h0m0s)"}},
		"revoked ingest": {[]string{"ingest", "-h"}, []string{"Usage: revoked ingest [flags]", "REVOKED_", "/v1/revocations",
			"-listen", "-admin-addr", "-bearer-token-file", "-nats-url", "-stream", "-jwks-file", "-jwks-url", "-issuer",
			"-audience", "-leeway", "-logout-audience", "-cutoff-claim", "-log-level", "-shutdown-delay", "-shutdown-timeout", "-version", `(default "127.0.0.1:9181")`, "(default 10s)"}},
	}
	for name, tc := range help {
		var out, errb bytes.Buffer
		if code := run(tc.args, &out, &errb); code != 0 || errb.Len() != 0 {
			t.Errorf("%s --help: exit %d, stderr %q", name, code, errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s --help lacks %q", name, w)
			}
		}
	}
	if out := helpOf(t, "--help"); strings.Contains(out, "-bearer-token-file") || strings.Contains(out, "-listen ") {
		t.Error("revoked --help lists the ingest flags")
	}

	bad := map[string]struct {
		args []string
		want string
	}{
		"revoked --bogus":                 {[]string{"--bogus"}, "revoked: flag provided but not defined: -bogus"},
		"revoked ingest --bogus":          {[]string{"ingest", "--bogus"}, "revoked ingest: flag provided but not defined: -bogus"},
		"revoked --log-level nope":        {[]string{"--jwks-file", "k.json", "--log-level", "nope"}, `revoked: --log-level must be debug, info, warn or error, not "nope"`},
		"revoked ingest --log-level nope": {[]string{"ingest", "--bearer-token-file", "t", "--log-level", "nope"}, `revoked ingest: --log-level must be debug, info, warn or error, not "nope"`},
	}
	for name, tc := range bad {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		cmd, _, _ := strings.Cut(tc.want, ":")
		want := tc.want + "\nRun '" + cmd + " --help' for the flags.\n"
		if code != 2 || errb.String() != want || out.Len() != 0 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2, stderr %q", name, code, out.String(), errb.String(), want)
		}
	}
}

// --version prints one line (version, VCS revision, Go version) and exits 0 before
// any other flag is checked: neither subcommand needs keys or NATS for it.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version", "--log-level", "nope"}, {"ingest", "--version"}} {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		name := "revoked"
		if args[0] == "ingest" {
			name = "revoked ingest"
		}
		if code != 0 || errb.Len() != 0 || !strings.HasPrefix(out.String(), name+" version ") ||
			!strings.Contains(out.String(), ", revision ") || !strings.HasSuffix(out.String(), runtime.Version()+"\n") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}

func helpOf(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("%v: exit %d", args, code)
	}
	return out.String()
}
