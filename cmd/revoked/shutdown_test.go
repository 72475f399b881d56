package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// shutdownDelay is the --shutdown-delay of the shutdown tests; the load stops
// loadMargin before it ends, when the process stops accepting by design.
const (
	shutdownDelay = 4 * time.Second
	loadMargin    = 700 * time.Millisecond
)

// On SIGTERM the sidecar, a real process under a load of concurrent gRPC and HTTP
// checks, says NOT_SERVING (gRPC health, /readyz) at once, answers every check for
// --shutdown-delay, keeps applying revocations meanwhile, then exits 0.
func TestSidecarShutdownDelay(t *testing.T) {
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	issuer, err := devissuer.New("EdDSA", "https://idp.shutdown.test", "api")
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	proc, addrs := startChild(t, "revoked started",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--nats-url", ns.URL(), "--jwks-file", jwks, "--issuer", issuer.Issuer, "--audience", issuer.Audience,
		"--shutdown-delay", shutdownDelay.String(), "--shutdown-timeout", "5s")
	grpcAddr, httpAddr, admin := addrs["grpc"].(string), addrs["http"].(string), addrs["admin"].(string)
	testsupport.Until(t, 30*time.Second, "sidecar ready", func() bool { return httpStatus("http://"+admin+"/readyz") == 200 })
	metrics := get(t, "http://"+admin+"/metrics")
	if !strings.Contains(metrics, `revoked_build_info{goversion="go`) {
		t.Errorf("/metrics lacks revoked_build_info:\n%s", grep(metrics, "revoked_build"))
	}

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	health := healthpb.NewHealthClient(conn)
	check := func(token string) (*authv3.CheckResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return client.Check(ctx, envoyreq.Check(envoyreq.Bearer(token)))
	}
	allowed := issuer.Token("alice", time.Hour, nil)
	grpcLoad := startLoad(8, func() error {
		resp, err := check(allowed)
		if err != nil {
			return err
		}
		if code := resp.GetStatus().GetCode(); code != 0 {
			return fmt.Errorf("check denied: status %d", code)
		}
		return nil
	})
	httpLoad := startLoad(2, func() error {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/orders", nil)
		req.Header.Set("authorization", "Bearer "+allowed)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("http check: %d", resp.StatusCode)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // the load runs before the signal too
	bobJTI := devissuer.RandomID()
	revokedLater := issuer.Token("bob", time.Hour, jwt.MapClaims{"jti": bobJTI})
	if resp, err := check(revokedLater); err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("bob's token before its revocation: %v %v", resp, err)
	}

	sigterm := time.Now()
	grpcBefore, httpBefore := grpcLoad.ok.Load(), httpLoad.ok.Load()
	proc.signal(syscall.SIGTERM)
	testsupport.Until(t, 2*time.Second, "gRPC health NOT_SERVING", func() bool {
		for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
			resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
				return false
			}
		}
		return true
	})
	testsupport.Until(t, 2*time.Second, "/readyz 503", func() bool { return httpStatus("http://"+admin+"/readyz") == 503 })

	// A revocation acknowledged during the delay is enforced: the replica still follows.
	body := fmt.Sprintf(`{"type":"jti","jti":%q,"exp":%d}`, bobJTI, time.Now().Add(2*time.Hour).Unix())
	if _, err := js.Publish(context.Background(), event.DefaultSubjectPrefix+".jti", []byte(body)); err != nil {
		t.Fatal(err)
	}
	testsupport.Until(t, 2*time.Second, "bob's token denied during the delay", func() bool {
		resp, err := check(revokedLater)
		return err == nil && strings.Contains(fmt.Sprint(resp.GetDeniedResponse().GetHeaders()), "token revoked")
	})

	time.Sleep(time.Until(sigterm.Add(shutdownDelay - loadMargin)))
	grpcLoad.end()
	httpLoad.end()
	if time.Since(sigterm) >= shutdownDelay {
		t.Fatalf("the load ended %v after SIGTERM, past the delay: the machine is too slow for this test", time.Since(sigterm))
	}
	grpcLoad.requireNoFailures(t, "gRPC checks")
	httpLoad.requireNoFailures(t, "HTTP checks")
	grpcDuring, httpDuring := grpcLoad.ok.Load()-grpcBefore, httpLoad.ok.Load()-httpBefore
	if grpcDuring < 100 || httpDuring < 10 {
		t.Errorf("checks answered during the delay: %d gRPC, %d HTTP; want many", grpcDuring, httpDuring)
	}
	t.Logf("answered during the %v delay: %d gRPC checks, %d HTTP checks, 0 failed", shutdownDelay, grpcDuring, httpDuring)

	if code := proc.wait(shutdownDelay + 15*time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	if took := time.Since(sigterm); took < shutdownDelay {
		t.Errorf("exited %v after SIGTERM, before the %v delay", took, shutdownDelay)
	}
	if !strings.Contains(proc.logs(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in the log")
	}
}

// On SIGTERM the ingest API, a real process under a load of POST /v1/revocations,
// says not ready at once, keeps publishing and acknowledging every revocation for
// --shutdown-delay, then exits 0; every revocation it acknowledged is in the stream.
func TestIngestShutdownDelay(t *testing.T) {
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	const bearer = "shutdown-test-bearer-token"
	bearerFile := filepath.Join(t.TempDir(), "bearer")
	if err := os.WriteFile(bearerFile, []byte(bearer), 0o600); err != nil {
		t.Fatal(err)
	}
	proc, addrs := startChild(t, "ingest API listening", "ingest",
		"--listen", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--bearer-token-file", bearerFile,
		"--nats-url", ns.URL(), "--shutdown-delay", shutdownDelay.String())
	api, admin := addrs["addr"].(string), addrs["admin"].(string)
	testsupport.Until(t, 30*time.Second, "ingest ready", func() bool { return httpStatus("http://"+admin+"/readyz") == 200 })
	metrics := get(t, "http://"+admin+"/metrics")
	if !strings.Contains(metrics, `revoked_build_info{goversion="go`) {
		t.Errorf("/metrics lacks revoked_build_info:\n%s", grep(metrics, "revoked_build"))
	}

	exp := time.Now().Add(time.Hour).Unix()
	revocations := startLoad(4, func() error {
		body := fmt.Sprintf(`{"type":"jti","jti":%q,"exp":%d,"reason":"logout"}`, devissuer.RandomID(), exp)
		req, _ := http.NewRequest("POST", "http://"+api+"/v1/revocations", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("POST /v1/revocations: %d %s", resp.StatusCode, b)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	sigterm := time.Now()
	before := revocations.ok.Load()
	proc.signal(syscall.SIGTERM)
	testsupport.Until(t, 2*time.Second, "/readyz 503", func() bool { return httpStatus("http://"+admin+"/readyz") == 503 })

	time.Sleep(time.Until(sigterm.Add(shutdownDelay - loadMargin)))
	revocations.end()
	if time.Since(sigterm) >= shutdownDelay {
		t.Fatalf("the load ended %v after SIGTERM, past the delay: the machine is too slow for this test", time.Since(sigterm))
	}
	revocations.requireNoFailures(t, "revocations")
	during := revocations.ok.Load() - before
	if during < 10 {
		t.Errorf("revocations acknowledged during the delay: %d; want many", during)
	}
	t.Logf("acknowledged during the %v delay: %d revocations, 0 failed", shutdownDelay, during)

	if code := proc.wait(shutdownDelay + 15*time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	if took := time.Since(sigterm); took < shutdownDelay {
		t.Errorf("exited %v after SIGTERM, before the %v delay", took, shutdownDelay)
	}
	st, err := js.Stream(context.Background(), event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.State.Msgs, uint64(revocations.ok.Load()); got != want {
		t.Errorf("stream holds %d events; %d were acknowledged", got, want)
	}
}

// load calls a function from several goroutines in a loop until end, counting
// successes and failures.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	first      error
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(workers int, call func() error) *load {
	l := &load{stop: make(chan struct{})}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if err := call(); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if l.first == nil {
						l.first = err
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// end stops the load and waits for the calls in flight.
func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) requireNoFailures(t *testing.T, what string) {
	t.Helper()
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%s: %d of %d failed; first: %v", what, n, n+l.ok.Load(), l.first)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grep(text, word string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, word) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
