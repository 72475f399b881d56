package sidecar

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

const (
	iss = "https://idp.example.com"
	aud = "orders-api"
)

type harness struct {
	t      *testing.T
	nats   *testsupport.NATS
	issuer *devissuer.Issuer
	jwks   string
	s      *Sidecar
	authz  authv3.AuthorizationClient
	health healthpb.HealthClient
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, nats: testsupport.StartNATS(t)}
	var err error
	if h.issuer, err = devissuer.New("ES256", iss, aud); err != nil {
		t.Fatal(err)
	}
	h.jwks = filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(h.jwks, h.issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	return h
}

// start runs a sidecar configured from flags, as the binary parses them.
func (h *harness) start(extra ...string) {
	t := h.t
	args := append([]string{
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--nats-url", h.nats.URL(), "--jwks-file", h.jwks, "--issuer", iss, "--audience", aud,
	}, extra...)
	cfg, err := ParseSettings(args)
	if err != nil {
		t.Fatal(err)
	}
	h.s, err = Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.s.Close)
	conn, err := grpc.NewClient(h.s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.authz = authv3.NewAuthorizationClient(conn)
	h.health = healthpb.NewHealthClient(conn)
}

func (h *harness) check(tok string) *authv3.CheckResponse {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := h.authz.Check(ctx, envoyreq.Check(envoyreq.Bearer(tok)))
	if err != nil {
		h.t.Fatalf("Check: %v", err)
	}
	return resp
}

func allowed(r *authv3.CheckResponse) bool { return code.Code(r.GetStatus().GetCode()) == code.Code_OK }

func description(r *authv3.CheckResponse) string {
	for _, hv := range r.GetDeniedResponse().GetHeaders() {
		if hv.GetHeader().GetKey() == "www-authenticate" {
			v := hv.GetHeader().GetValue()
			if _, d, ok := strings.Cut(v, `error_description="`); ok {
				return strings.TrimSuffix(d, `"`)
			}
			return v
		}
	}
	return ""
}

func (h *harness) publish(js jetstream.JetStream, subject, payload string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, subject, []byte(payload)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Get("http://" + h.s.AdminAddr() + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *harness) healthStatus(service string) healthpb.HealthCheckResponse_ServingStatus {
	resp, err := h.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.GetStatus()
}

// The whole path: events published before start are enforced as soon as the sidecar
// is ready (and it is not ready before); live events flip matching tokens to 401.
func TestEndToEnd(t *testing.T) {
	h := newHarness(t)
	// The stream does not exist yet: the sidecar must start, stay unready and deny.
	h.start()
	alice := h.issuer.Token("alice", time.Hour, nil)
	mallory := h.issuer.Token("mallory", time.Hour, nil)
	if r := h.check(alice); allowed(r) || r.GetDeniedResponse().GetStatus().GetCode() != 503 {
		t.Fatalf("unsynced sidecar answered %v", r.GetStatus())
	}
	if code, _ := h.get("/readyz"); code != 503 {
		t.Fatalf("/readyz %d before sync", code)
	}
	if code, _ := h.get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	if st := h.healthStatus(authzService); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("gRPC health %v before sync", st)
	}

	// An operator creates the stream; an earlier revocation of mallory is in it.
	js := h.nats.CreateStream(stream.Settings{})
	h.publish(js, "revocations.cutoff", fmt.Sprintf(`{"type":"cutoff","claim":"sub","value":"mallory","not_before":%d,"iss":%q}`, time.Now().Add(time.Second).Unix(), iss))
	testsupport.Until(t, 10*time.Second, "ready", h.s.Ready)
	if r := h.check(mallory); allowed(r) || description(r) != "token revoked" {
		t.Fatalf("replayed cutoff not enforced at ready: %v", r.GetStatus())
	}
	for _, svc := range []string{"", authzService} {
		if st := h.healthStatus(svc); st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("gRPC health %q: %v", svc, st)
		}
	}
	if code, _ := h.get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d after sync", code)
	}

	jti := devissuer.RandomID()
	bobTok := h.issuer.Token("bob", time.Hour, jwt.MapClaims{"jti": jti})
	carol := h.issuer.Token("carol", time.Hour, nil)
	dave := h.issuer.Token("dave", time.Hour, nil)
	for name, tok := range map[string]string{"alice": alice, "bob": bobTok, "carol": carol, "dave": dave} {
		if r := h.check(tok); !allowed(r) {
			t.Fatalf("%s denied before any revocation: %v %s", name, r.GetStatus(), description(r))
		}
	}
	exp := time.Now().Add(time.Hour).Unix()
	h.publish(js, "revocations.jti", fmt.Sprintf(`{"type":"jti","jti":%q,"exp":%d,"iss":%q,"reason":"logout"}`, jti, exp, iss))
	h.publish(js, "revocations.cutoff", fmt.Sprintf(`{"type":"cutoff","claim":"sub","value":"carol","not_before":%d,"reason":"password_change"}`, time.Now().Add(time.Second).Unix()))
	testsupport.Until(t, 5*time.Second, "bob and carol denied", func() bool { return !allowed(h.check(bobTok)) && !allowed(h.check(carol)) })
	for name, tok := range map[string]string{"bob": bobTok, "carol": carol} {
		r := h.check(tok)
		if r.GetDeniedResponse().GetStatus().GetCode() != 401 || description(r) != "token revoked" {
			t.Fatalf("%s: %v %q", name, r.GetDeniedResponse().GetStatus(), description(r))
		}
	}
	if r := h.check(bobTok); r.GetStatus().GetMessage() != "revoked_jti" {
		t.Fatalf("bob's reason %q", r.GetStatus().GetMessage())
	}
	if r := h.check(carol); r.GetStatus().GetMessage() != "revoked_cutoff" {
		t.Fatalf("carol's reason %q", r.GetStatus().GetMessage())
	}
	for name, tok := range map[string]string{"alice": alice, "dave": dave} {
		if r := h.check(tok); !allowed(r) {
			t.Fatalf("%s denied by someone else's revocation: %v", name, r.GetStatus())
		}
	}
	// A token carol gets after her password change passes.
	fresh := h.issuer.Token("carol", time.Hour, jwt.MapClaims{"iat": time.Now().Add(2 * time.Second).Unix()})
	if r := h.check(fresh); !allowed(r) {
		t.Fatalf("carol's new token denied: %v", r.GetStatus())
	}

	// The same decisions through the HTTP mode.
	for tok, want := range map[string]int{alice: 200, bobTok: 401} {
		req, _ := http.NewRequest("GET", "http://"+h.s.HTTPAddr()+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("HTTP mode: %d, want %d", resp.StatusCode, want)
		}
	}

	_, metrics := h.get("/metrics")
	for _, want := range []string{
		`revoked_checks_total{decision="deny",reason="revoked_jti"}`,
		`revoked_checks_total{decision="deny",reason="revoked_cutoff"}`,
		`revoked_checks_total{decision="allow",reason="ok"}`,
		`revoked_blocklist_entries{kind="jti"} 1`,
		`revoked_blocklist_entries{kind="cutoff"} 2`,
		`revoked_sync_last_sequence 3`,
		`revoked_sync_connected 1`,
		`revoked_check_duration_seconds_bucket`,
		`revoked_events_rejected_total{reason="malformed"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	h := newHarness(t)
	h.nats.CreateStream(stream.Settings{})
	sock := filepath.Join(t.TempDir(), "authz.sock")
	h.start("--grpc-addr", "unix://"+sock)
	if h.s.GRPCAddr() != "unix://"+sock {
		t.Fatalf("GRPCAddr %q", h.s.GRPCAddr())
	}
	testsupport.Until(t, 10*time.Second, "ready", h.s.Ready)
	if r := h.check(h.issuer.Token("alice", time.Hour, nil)); !allowed(r) {
		t.Fatalf("check over the Unix socket: %v", r.GetStatus())
	}
}

func TestStalePolicy(t *testing.T) {
	for _, policy := range []string{StaleServe, StaleDeny} {
		t.Run(policy, func(t *testing.T) {
			h := newHarness(t)
			h.nats.CreateStream(stream.Settings{})
			h.start("--max-staleness", "300ms", "--stale-policy", policy)
			testsupport.Until(t, 10*time.Second, "ready", h.s.Ready)
			tok := h.issuer.Token("alice", time.Hour, nil)
			h.nats.Stop()
			testsupport.Until(t, 5*time.Second, "staleness past the limit", func() bool {
				return h.s.Replica.Staleness(time.Now()) > 400*time.Millisecond
			})
			time.Sleep(100 * time.Millisecond) // one turn of the gate loop
			r := h.check(tok)
			switch policy {
			case StaleServe:
				if !allowed(r) {
					t.Fatalf("serve policy denied: %v", r.GetStatus())
				}
			case StaleDeny:
				if allowed(r) || r.GetStatus().GetMessage() != "stale" || r.GetDeniedResponse().GetStatus().GetCode() != 503 {
					t.Fatalf("deny policy answered %v", r.GetStatus())
				}
				if code, _ := h.get("/readyz"); code != 503 {
					t.Fatalf("/readyz %d while stale", code)
				}
			}
			h.nats.Restart()
			testsupport.Until(t, 10*time.Second, "serving again after NATS returns", func() bool { return allowed(h.check(tok)) })
		})
	}
}

func TestGracefulShutdown(t *testing.T) {
	h := newHarness(t)
	h.nats.CreateStream(stream.Settings{})
	h.start()
	testsupport.Until(t, 10*time.Second, "ready", h.s.Ready)
	if r := h.check(h.issuer.Token("alice", time.Hour, nil)); !allowed(r) {
		t.Fatal("not serving")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if h.s.Ready() {
		t.Fatal("ready after shutdown")
	}
	cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
	defer ccancel()
	if _, err := h.authz.Check(cctx, envoyreq.Check(envoyreq.Bearer("x.y.z"))); err == nil {
		t.Fatal("a check succeeded after shutdown")
	}
}

func TestDevMode(t *testing.T) {
	cfg, err := ParseSettings([]string{"--dev", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	testsupport.Until(t, 10*time.Second, "dev sidecar ready", s.Ready)
	resp, err := http.Get("http://" + s.AdminAddr() + "/dev/token?sub=zoe")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if d := s.Authorizer.Decide("Bearer "+strings.TrimSpace(string(tok)), time.Now()); !d.Allowed() || d.Token.Subject != "zoe" {
		t.Fatalf("dev token: %v", d.Reason)
	}
	out, err := os.CreateTemp(t.TempDir(), "banner")
	if err != nil {
		t.Fatal(err)
	}
	s.PrintDevBanner(out)
	b, _ := os.ReadFile(out.Name())
	for _, want := range []string{"TOKEN=", "revokectl check --addr " + s.GRPCAddr(), "revokectl revoke token"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("banner lacks %q", want)
		}
	}
}
