//go:build idp

package idp

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the main module's directory: the tests run in test/idp.
var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Join(wd, "..", "..")
}()

// binary is the path of a program make test-idp builds into ./bin, or env's value.
func binary(t *testing.T, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		path = filepath.Join(repoRoot, "bin", name)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s not found (%v): run make test-idp, which builds it, or set %s", name, err, env)
	}
	return path
}

// proc is a program the test runs, its output (stdout and stderr) in a log file.
type proc struct {
	name, logf string
	cmd        *exec.Cmd
	exited     chan struct{}
}

// startProc runs bin and, when waitMsg is set, waits for the JSON log line whose msg is
// waitMsg and returns it. The process gets SIGTERM when the test ends; the tail of its
// log is printed if the test failed.
func startProc(t *testing.T, name, bin string, args, env []string, waitMsg string) (*proc, map[string]any) {
	t.Helper()
	p := &proc{name: name, logf: filepath.Join(t.TempDir(), name+".log"), exited: make(chan struct{})}
	logf, err := os.Create(p.logf)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	pw.Close()
	found := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logf.Write(append(line, '\n'))
			var rec map[string]any
			if waitMsg != "" && json.Unmarshal(line, &rec) == nil && rec["msg"] == waitMsg {
				select {
				case found <- rec:
				default:
				}
			}
		}
		_, _ = io.Copy(logf, pr)
		_ = p.cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("log of %s (%s):\n%s", name, p.logf, tail(p.logf, 6000))
		}
	})
	if waitMsg == "" {
		return p, nil
	}
	select {
	case rec := <-found:
		return p, rec
	case <-p.exited:
		t.Fatalf("%s exited at start:\n%s", name, tail(p.logf, 6000))
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: no %q line within 60s:\n%s", name, waitMsg, tail(p.logf, 6000))
	}
	return nil, nil
}

// stop sends SIGTERM and waits for the process, killing it after 15 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// logContains reports whether the process has logged s.
func (p *proc) logContains(s string) bool {
	b, _ := os.ReadFile(p.logf)
	return strings.Contains(string(b), s)
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// secretFile writes a secret to a 0600 file and returns its path.
func secretFile(t *testing.T, name, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// step logs what the test does, with the time; it is never given a token.
func step(t *testing.T, format string, a ...any) {
	t.Logf("%s %s", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}
