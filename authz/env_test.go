package authz

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/jwtkeys"
)

const (
	testIss = "https://idp.example.com"
	testAud = "api"
)

// testEnv is a verifier over a JWKS file holding an RSA and an Ed25519 key, an
// authorizer with a real blocklist, and a real gRPC server on loopback.
type testEnv struct {
	rsa, ed *devissuer.Issuer
	keys    *jwtkeys.Keys
	set     *blocklist.Set
	a       *Authorizer
	client  authv3.AuthorizationClient
}

func newTestEnv(t testing.TB, mutate ...func(*VerifierConfig, *jwtkeys.Config)) *testEnv {
	t.Helper()
	e := &testEnv{}
	var err error
	if e.rsa, err = devissuer.New("RS256", testIss, testAud); err != nil {
		t.Fatal(err)
	}
	if e.ed, err = devissuer.New("EdDSA", testIss, testAud); err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []any{e.rsa.JWK(), e.ed.JWK()}})
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	vc := VerifierConfig{Issuers: []string{testIss}, Audiences: []string{testAud}, Leeway: 5 * time.Second, RequireJTI: true, CutoffClaims: []string{"sub", "sid", "client_id"}}
	kc := jwtkeys.Config{File: path}
	for _, m := range mutate {
		m(&vc, &kc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if e.keys, err = jwtkeys.New(ctx, kc, nil); err != nil {
		t.Fatal(err)
	}
	e.set = blocklist.New()
	e.a = NewAuthorizer(NewVerifier(e.keys, vc), e.set, Options{CacheSize: 1000})
	e.a.SetGate(ReasonOK)

	e.client = newCheckServer(t, e.a)
	return e
}

// newCheckServer serves a's checks on loopback the way the sidecar does
// (internal/sidecar's listen: a 4 MiB message limit and GRPCServerOptions, so the
// partial CheckRequest decoder), and returns a client of it.
func newCheckServer(t testing.TB, a *Authorizer) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(4 << 20)}, GRPCServerOptions()...)...)
	authv3.RegisterAuthorizationServer(srv, NewGRPCServer(a, "x-revoked-sub"))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}
