package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/internal/testsupport"
)

// sidecar is one revoked process. Restart runs it again with the same flags (on new
// random ports: the test reads them from the "revoked started" log line).
type sidecar struct {
	t    *testing.T
	name string
	args []string
	env  []string
	logf string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	grpc   string
	admin  string
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
}

// sidecarOpts are the flags that differ between the sidecars of a scenario.
type sidecarOpts struct {
	natsURL      string // default: every node of the cluster
	maxStaleness time.Duration
	stalePolicy  string
}

// startSidecar runs a sidecar as the restricted NATS user, with the suite's JWKS.
func startSidecar(t *testing.T, name string, env *env, o sidecarOpts) *sidecar {
	t.Helper()
	if o.natsURL == "" {
		o.natsURL = env.nats.urls()
	}
	args := []string{
		"--grpc-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0",
		"--admin-addr", "127.0.0.1:0",
		"--nats-url", o.natsURL,
		"--nats-user", sidecarUser,
		"--jwks-file", env.jwks,
		"--issuer", env.issuer.Issuer,
		"--audience", env.issuer.Audience,
		"--log-level", "debug",
	}
	if o.maxStaleness > 0 {
		args = append(args, "--max-staleness", o.maxStaleness.String(), "--stale-policy", o.stalePolicy)
	}
	s := &sidecar{
		t:    t,
		name: name,
		args: args,
		// The password goes through the environment, as a Kubernetes secret would.
		env:  append(os.Environ(), "REVOKED_NATS_PASSWORD="+env.nats.passwords[sidecarUser]),
		logf: filepath.Join(env.dir, "revoked-"+name+".log"),
	}
	addLog(s.logf)
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *sidecar) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(bins.revoked, s.args...)
	cmd.Env = s.env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("revoked %s: %v", s.name, err)
	}
	started := make(chan map[string]string, 1)
	exited := make(chan struct{})
	go func() {
		// Copy the log to its file, and hand over the addresses of "revoked started".
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logf.Write(append(line, '\n'))
			var rec map[string]any
			if json.Unmarshal(line, &rec) == nil && rec["msg"] == "revoked started" {
				m := map[string]string{}
				for _, k := range []string{"grpc", "http", "admin"} {
					m[k], _ = rec[k].(string)
				}
				started <- m
			}
		}
		_, _ = io.Copy(logf, stderr)
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	var addrs map[string]string
	select {
	case addrs = <-started:
	case <-exited:
		s.t.Fatalf("revoked %s exited at start; log in %s:\n%s", s.name, s.logf, tail(s.logf))
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		s.t.Fatalf("revoked %s: no \"revoked started\" line within 30s", s.name)
	}
	conn, err := grpc.NewClient(addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.cmd, s.exited, s.grpc, s.admin = cmd, exited, addrs["grpc"], addrs["admin"]
	s.conn, s.client = conn, authv3.NewAuthorizationClient(conn)
	s.mu.Unlock()
}

// waitReady waits until /readyz says 200: the replica has caught up with the stream.
func (s *sidecar) waitReady() {
	s.t.Helper()
	testsupport.WaitFor(s.t, 60*time.Second, "sidecar "+s.name+" ready", func() error {
		code, body, err := s.get("/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("readyz %d: %s", code, strings.TrimSpace(body))
		}
		return nil
	})
}

// kill sends SIGKILL and waits for the process to end.
func (s *sidecar) kill() { s.signal(syscall.SIGKILL) }

func (s *sidecar) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited, conn := s.cmd, s.exited, s.conn
	s.cmd, s.conn = nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	_ = conn.Close()
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func (s *sidecar) get(path string) (int, string, error) {
	s.mu.Lock()
	admin := s.admin
	s.mu.Unlock()
	resp, err := httpClient.Get("http://" + admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b), err
}

// replicaState is the JSON of /debug/replica.
type replicaState struct {
	Ready            bool    `json:"ready"`
	Connected        bool    `json:"connected"`
	LastSequence     uint64  `json:"last_sequence"`
	JTIEntries       int     `json:"jti_entries"`
	CutoffEntries    int     `json:"cutoff_entries"`
	StalenessSeconds float64 `json:"staleness_seconds"`
	Gate             string  `json:"gate"`
}

func (s *sidecar) replica() (replicaState, error) {
	var st replicaState
	code, body, err := s.get("/debug/replica")
	if err != nil {
		return st, err
	}
	if code != 200 {
		return st, fmt.Errorf("/debug/replica: %d", code)
	}
	return st, json.Unmarshal([]byte(body), &st)
}

// metric returns the value of the sample whose name and labels are series exactly as
// /metrics writes them (e.g. `revoked_events_applied_total{type="jti"}`).
func (s *sidecar) metric(series string) (float64, error) {
	code, body, err := s.get("/metrics")
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("/metrics: %d", code)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no series %s", series)
}

// check asks the sidecar, over gRPC as Envoy does, about token; it returns the
// decision's reason label (ok, revoked_jti, stale, ...).
func (s *sidecar) check(ctx context.Context, token string) (string, error) {
	s.mu.Lock()
	client := s.client
	s.mu.Unlock()
	if client == nil {
		return "", fmt.Errorf("sidecar %s is not running", s.name)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, envoyreq.Check(envoyreq.Bearer(token)))
	if err != nil {
		return "", err
	}
	return resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue(), nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
