package flags

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestLogging(t *testing.T) {
	for level, ok := range map[string]bool{"debug": true, "info": true, "warn": true, "error": true, "DEBUG": true, "nope": false, "": false} {
		l := Logging{Level: level}
		if err := l.Validate(); (err == nil) != ok {
			t.Errorf("--log-level %q: %v", level, err)
		}
	}
	var b bytes.Buffer
	l := Logging{Level: "warn"}
	log := l.Logger(&b)
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	if out := b.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `"msg":"shown","k":"v"`) {
		t.Fatalf("logs %q", out)
	}
}

// Each group registers its flags once, with one default, and checks them in one place.
func TestGroups(t *testing.T) {
	var (
		e Events
		k Keys
		l Logging
	)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	e.RegisterFlags(fs)
	k.RegisterFlags(fs)
	k.RegisterTokenFlags(fs)
	l.RegisterFlags(fs)
	t.Setenv("REVOKED_LEEWAY", "3s")
	if err := Parse(fs, "", []string{"--jwks-file", "a", "--cutoff-claim", "tenant"}); err != nil {
		t.Fatal(err)
	}
	if e.Stream != "REVOCATIONS" || e.SubjectPrefix != "revocations" || k.Leeway != 3*time.Second || k.MaxTokenLife != 24*time.Hour || k.JWKSRefresh != time.Hour || l.Level != "info" || strings.Join(e.CutoffClaims, ",") != "tenant" {
		t.Fatalf("%+v %+v %+v", e, k, l)
	}
	for name, bad := range map[string]Keys{
		"both key sources": {JWKSFile: "a", JWKSURL: "b"},
		"negative leeway":  {Leeway: -time.Second},
		"huge leeway":      {Leeway: time.Hour},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestParseHelpAndExit(t *testing.T) {
	var l Logging
	fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
	l.RegisterFlags(fs)
	err := Parse(fs, "Usage: cmd\n", []string{"-h"})
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	var out, errb bytes.Buffer
	if code := Exit("cmd", err, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "Usage: cmd\n") || !strings.Contains(out.String(), "-log-level") || errb.Len() != 0 {
		t.Fatalf("help: %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := Exit("cmd", Parse(fs, "", []string{"stray"}), &out, &errb); code != 2 || errb.String() != "cmd: unexpected argument \"stray\"\nRun 'cmd --help' for the flags.\n" || out.Len() != 0 {
		t.Fatalf("stray argument: %d %q", code, errb.String())
	}
}

// --version prints the build and exits 0 before anything is checked; only the command
// line asks for it: a REVOKED_VERSION in the environment neither triggers it nor stops
// the process.
func TestVersion(t *testing.T) {
	var l Logging
	newFS := func() *flag.FlagSet {
		fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
		l.RegisterFlags(fs)
		return fs
	}
	err := Parse(newFS(), "", []string{"--log-level", "nope", "--version"})
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("--version: %v", err)
	}
	var out, errb bytes.Buffer
	if code := Exit("revoked ingest", err, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "revoked ingest version ") ||
		!strings.Contains(out.String(), ", revision ") || !strings.HasSuffix(out.String(), "\n") || errb.Len() != 0 {
		t.Fatalf("version: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	for _, v := range []string{"v1.2.3", "true"} {
		t.Setenv("REVOKED_VERSION", v)
		if err := Parse(newFS(), "", nil); err != nil {
			t.Errorf("REVOKED_VERSION=%s: %v", v, err)
		}
	}
}

func TestShutdown(t *testing.T) {
	var s Shutdown
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	s.RegisterFlags(fs)
	t.Setenv("REVOKED_SHUTDOWN_DELAY", "15s")
	if err := Parse(fs, "", nil); err != nil {
		t.Fatal(err)
	}
	if s.Delay != 15*time.Second || s.Timeout != DefaultShutdownTimeout || s.Validate() != nil {
		t.Fatalf("%+v: %v", s, s.Validate())
	}
	for name, bad := range map[string]Shutdown{
		"negative delay": {Delay: -time.Second, Timeout: time.Second},
		"no timeout":     {Delay: time.Second},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
