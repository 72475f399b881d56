package faults

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// bins holds the binaries TestMain builds once for the whole suite.
var bins struct {
	dir        string
	revoked    string
	natsServer string
}

// long reports whether the long form runs (REVOKED_FAULTS=long).
var long = os.Getenv("REVOKED_FAULTS") == "long"

// secrets collects every token, password and key the suite hands out; TestMain greps
// every log the suite wrote for them once the tests have run.
var secrets struct {
	sync.Mutex
	values []string
	logs   []string
}

func addSecret(s string) {
	secrets.Lock()
	defer secrets.Unlock()
	secrets.values = append(secrets.values, s)
}

func addLog(path string) {
	secrets.Lock()
	defer secrets.Unlock()
	secrets.logs = append(secrets.logs, path)
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "revoked-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins.dir = dir
	bins.revoked = filepath.Join(dir, "revoked")
	bins.natsServer = filepath.Join(dir, "nats-server")
	start := time.Now()
	// The sidecar is built with the race detector when the suite runs under it, so that
	// the real processes are checked too.
	revokedArgs := []string{"build", "-o", bins.revoked}
	if raceEnabled {
		revokedArgs = append(revokedArgs, "-race")
	}
	for _, args := range [][]string{
		append(revokedArgs, "github.com/revoked-dev/revoked/cmd/revoked"),
		{"build", "-o", bins.natsServer, "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command(goTool(), args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "faults: go %s: %v\n", strings.Join(args, " "), err)
			return 1
		}
	}
	fmt.Fprintf(os.Stderr, "faults: binaries built in %s (race=%v, long=%v)\n", time.Since(start).Round(time.Millisecond), raceEnabled, long)
	code := m.Run()
	// The sidecars run as the NATS user of docs/nats-permissions.md: they must never
	// have needed a right it lacks.
	if v := grepLogs("revoked-", "permissions violation"); len(v) > 0 {
		for _, l := range v {
			fmt.Fprintln(os.Stderr, "faults: PERMISSIONS VIOLATION:", l)
		}
		return 1
	}
	if leaks := grepSecrets(); len(leaks) > 0 {
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "faults: SECRET IN LOG:", l)
		}
		return 1
	}
	secrets.Lock()
	fmt.Fprintf(os.Stderr, "faults: %d log files checked for %d tokens and secrets: none found\n", len(secrets.logs), len(secrets.values))
	secrets.Unlock()
	return code
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// grepSecrets looks for every secret in every log and returns "file: secret prefix" for
// each hit. A token is looked for by its payload and its signature segments, so that a
// token logged in part, or inside a header value, is found too. Lines are cut into runs
// of base64url characters, each looked up in a set: linear in the size of the logs.
func grepSecrets() []string {
	secrets.Lock()
	defer secrets.Unlock()
	needles := map[string]bool{}
	for _, s := range secrets.values {
		parts := strings.Split(s, ".")
		if len(parts) == 3 {
			parts = parts[1:] // a JWT: its header is the same for every token
		}
		for _, p := range parts {
			if len(p) >= 12 {
				needles[p] = true
			}
		}
	}
	isB64 := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
	}
	var hits []string
	for _, path := range secrets.logs {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			for _, run := range strings.FieldsFunc(sc.Text(), func(r rune) bool { return !isB64(r) }) {
				if needles[run] {
					hits = append(hits, fmt.Sprintf("%s: %.12s…", filepath.Base(path), run))
				}
			}
		}
		f.Close()
	}
	return hits
}

// grepLogs returns the lines, lowercased, holding needle (lower case) in the logs whose
// file name starts with prefix.
func grepLogs(prefix, needle string) []string {
	secrets.Lock()
	defer secrets.Unlock()
	var hits []string
	for _, path := range secrets.logs {
		if !strings.HasPrefix(filepath.Base(path), prefix) {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(strings.ToLower(string(b)), "\n") {
			if strings.Contains(line, needle) {
				hits = append(hits, filepath.Base(path)+": "+line)
			}
		}
	}
	return hits
}
