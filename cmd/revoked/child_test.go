package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childEnv, set in a child's environment, makes the test binary run the command
// itself (main) instead of the tests: the shutdown tests send a real process real
// signals without building another binary.
const childEnv = "BE_REVOKED_COMMAND"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// child is `revoked` running as a separate process.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has ended
	mu     sync.Mutex
	log    bytes.Buffer // its stderr: the JSON logs
}

// startChild runs the command with args and waits for the log record whose msg is
// started, which it returns; the process is killed when the test ends.
func startChild(t *testing.T, started string, args ...string) (*child, map[string]any) {
	t.Helper()
	c := &child{t: t, exited: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], args...)
	c.cmd.Env = append(os.Environ(), childEnv+"=1")
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	records := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.mu.Lock()
			c.log.Write(append(sc.Bytes(), '\n'))
			c.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == started {
				records <- rec
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			t.Logf("log of %v:\n%s", args, c.logs())
		}
	})
	select {
	case rec := <-records:
		return c, rec
	case <-c.exited:
		t.Fatalf("exited at start:\n%s", c.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("no %q within 60s:\n%s", started, c.logs())
	}
	return nil, nil
}

func (c *child) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

func (c *child) signal(sig syscall.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatal(err)
	}
}

// wait waits up to timeout for the process to end and returns its exit status.
func (c *child) wait(timeout time.Duration) int {
	c.t.Helper()
	select {
	case <-c.exited:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		c.t.Fatalf("still running after %v", timeout)
		return -1
	}
}

// httpStatus is the status of GET url; 0 when it could not be asked.
func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
