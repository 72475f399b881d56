package sidecar_test

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/internal/sidecar"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// SidecarPermissions are the NATS rights the sidecar's user needs for stream
// REVOCATIONS, as docs/nats-permissions.md documents them: the JetStream API calls of
// an ordered consumer (stream info; consumer create, delete, info, next), and its
// inbox. Nothing to publish revocations, nothing to create, change or purge the stream.
var sidecarPermissions = &server.Permissions{
	Publish: &server.SubjectPermission{Allow: []string{
		"$JS.API.STREAM.INFO.REVOCATIONS",
		"$JS.API.CONSUMER.CREATE.REVOCATIONS.>",
		"$JS.API.CONSUMER.DELETE.REVOCATIONS.>",
		"$JS.API.CONSUMER.INFO.REVOCATIONS.>",
		"$JS.API.CONSUMER.MSG.NEXT.REVOCATIONS.>",
	}},
	Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
}

// secEnv is a NATS server with an admin user and the sidecar's restricted user, an
// issuer, and a sidecar started in-process as the restricted user, logging at debug.
type secEnv struct {
	nats     *testsupport.NATS
	adminJS  jetstream.JetStream
	issuer   *devissuer.Issuer
	cfg      sidecar.Settings
	sc       *sidecar.Sidecar
	client   authv3.AuthorizationClient
	log      *testsupport.LogBuffer
	password string
}

func newSecEnv(t *testing.T) *secEnv {
	t.Helper()
	e := &secEnv{log: &testsupport.LogBuffer{}, password: devissuer.RandomID()}
	opts := testsupport.NATSOptions(t)
	opts.Users = []*server.User{
		{Username: "admin", Password: "admin-" + e.password},
		{Username: "sidecar", Password: e.password, Permissions: sidecarPermissions},
	}
	e.nats = testsupport.StartNATSWith(t, opts)
	var err error
	if e.adminJS, err = jetstream.New(e.nats.Connect(nats.UserInfo("admin", "admin-"+e.password))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, e.adminJS, stream.Settings{}); err != nil {
		t.Fatal(err)
	}
	if e.issuer, err = devissuer.New("EdDSA", "https://idp.sec.test", "api"); err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, e.issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REVOKED_NATS_PASSWORD", e.password)
	cfg, err := sidecar.ParseSettings([]string{
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--nats-url", e.nats.URL(), "--nats-user", "sidecar",
		"--jwks-file", jwks, "--issuer", e.issuer.Issuer, "--audience", e.issuer.Audience,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = cfg
	log := slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if e.sc, err = sidecar.Start(context.Background(), cfg, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.sc.Shutdown(ctx)
	})
	conn, err := grpc.NewClient(e.sc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.client = authv3.NewAuthorizationClient(conn)
	testsupport.Until(t, 20*time.Second, "sidecar ready", e.sc.Ready)
	return e
}

func (e *secEnv) reason(t *testing.T, tok string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.client.Check(ctx, envoyreq.Check(envoyreq.Bearer(tok)))
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
}

// The listeners default to loopback (Envoy runs in the same pod): nothing is exposed
// beyond the pod unless the operator says so.
func TestSecurityLoopbackDefaults(t *testing.T) {
	var c sidecar.Settings
	fs := flag.NewFlagSet("revoked", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"--grpc-addr": c.GRPCAddr, "--http-addr": c.HTTPAddr, "--admin-addr": c.AdminAddr} {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("%s %q: %v", name, addr, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Errorf("%s defaults to %q, not a loopback address", name, addr)
		}
	}
}

// The sidecar runs as a NATS user holding only the rights docs/nats-permissions.md
// lists: it replays, follows, and survives a server restart (its ordered consumer is
// recreated), while that user can neither publish a revocation nor touch the stream.
// No token or password reaches the log.
func TestSecurityRestrictedNATSUser(t *testing.T) {
	e := newSecEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tokens []string
	revoke := func() string {
		jti := devissuer.RandomID()
		tok := e.issuer.Token("alice", time.Hour, map[string]any{"jti": jti})
		tokens = append(tokens, tok)
		payload := `{"type":"jti","jti":"` + jti + `","exp":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`
		// As a real publisher does: retry with the same message id until acked (the
		// server may still be recovering its stream right after a restart).
		for {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := e.adminJS.Publish(actx, "revocations.jti", []byte(payload), jetstream.WithMsgID(jti))
			acancel()
			if err == nil {
				return tok
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	tok := revoke()
	testsupport.Until(t, 10*time.Second, "revocation applied", func() bool { return e.reason(t, tok) == "revoked_jti" })

	e.nats.Restart()
	tok2 := revoke()
	testsupport.Until(t, 20*time.Second, "revocation applied after a server restart", func() bool { return e.reason(t, tok2) == "revoked_jti" })
	fresh := e.issuer.Token("bob", time.Hour, nil)
	tokens = append(tokens, fresh)
	if r := e.reason(t, fresh); r != "ok" {
		t.Fatalf("fresh token: %s", r)
	}

	// What the sidecar's user may not do.
	var violations gosync.Map
	nc := e.nats.Connect(nats.UserInfo("sidecar", e.password), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations.Store(err.Error(), true)
	}))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, time.Second) }
	c1, cancel1 := short()
	defer cancel1()
	if _, err := js.Publish(c1, "revocations.jti", []byte(`{"type":"jti","jti":"x","exp":4000000000}`)); err == nil {
		t.Error("the sidecar's user published a revocation")
	}
	c2, cancel2 := short()
	defer cancel2()
	if err := js.DeleteStream(c2, "REVOCATIONS"); err == nil {
		t.Error("the sidecar's user deleted the stream")
	}
	c3, cancel3 := short()
	defer cancel3()
	if _, err := js.CreateOrUpdateStream(c3, jetstream.StreamConfig{Name: "REVOCATIONS", Subjects: []string{"revocations.>"}, MaxAge: time.Second}); err == nil {
		t.Error("the sidecar's user changed the stream")
	}
	if err := nc.Publish("$JS.API.STREAM.PURGE.REVOCATIONS", nil); err == nil {
		_ = nc.Flush()
	}
	testsupport.Until(t, 5*time.Second, "permission violations reported", func() bool {
		n := 0
		violations.Range(func(k, _ any) bool {
			if strings.Contains(strings.ToLower(k.(string)), "permissions violation") {
				n++
			}
			return true
		})
		return n >= 2
	})
	info, err := e.adminJS.Stream(ctx, "REVOCATIONS")
	if err != nil {
		t.Fatal(err)
	}
	if st := info.CachedInfo(); st.State.Msgs != 2 || st.Config.MaxAge != stream.Config(stream.Settings{}).MaxAge {
		t.Errorf("stream touched: %d messages, MaxAge %s", st.State.Msgs, st.Config.MaxAge)
	}

	log := e.log.String()
	if !strings.Contains(log, "revoked started") {
		t.Fatalf("no log captured")
	}
	// The sidecar itself never needed more than it was given.
	if strings.Contains(strings.ToLower(log), "permissions violation") {
		t.Errorf("the sidecar hit a permissions violation:\n%s", log)
	}
	for _, s := range append(tokens, e.password) {
		for _, part := range strings.Split(s, ".")[min(1, strings.Count(s, ".")):] {
			if len(part) >= 12 && strings.Contains(log, part) {
				t.Errorf("a token or the NATS password reached the log")
			}
		}
	}
}

// /readyz says 200 only once checks are answered: a pod marked ready must not refuse
// its first requests as not_ready (the gate opens a tick after the replica is ready).
func TestSecurityReadyMeansServing(t *testing.T) {
	e := newSecEnv(t)
	tok := e.issuer.Token("alice", time.Hour, nil)
	for round := range 5 {
		cfg := e.cfg
		sc, err := sidecar.Start(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(sc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		client := authv3.NewAuthorizationClient(conn)
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get("http://" + sc.AdminAddr() + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("never ready")
			}
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := client.Check(ctx, envoyreq.Check(envoyreq.Bearer(tok)))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue(); r != "ok" {
			t.Errorf("round %d: first check after /readyz 200 answered %q", round, r)
		}
		conn.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = sc.Shutdown(sctx)
		scancel()
	}
}
