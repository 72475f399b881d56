package region

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/internal/sidecar"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/publish"
	"github.com/revoked-dev/revoked/stream"
)

const (
	iss = "https://idp.example.com"
	aud = "orders-api"
)

// fleet is the two regions with the revocation stream in the hub, its mirror in the
// region, an issuer, and a publisher writing to the hub.
type fleet struct {
	*testsupport.Regions
	hub, region jetstream.JetStream
	issuer      *devissuer.Issuer
	jwks        string
	pub         *publish.Publisher
}

func newFleet(t testing.TB) *fleet {
	t.Helper()
	f := &fleet{Regions: testsupport.StartRegions(t)}
	f.hub = f.Hub.CreateStream(stream.Settings{})
	var err error
	if f.region, err = jetstream.New(f.Leaf.Connect()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mirror, err := stream.EnsureMirror(ctx, f.region, stream.Settings{}, stream.Origin{Domain: testsupport.HubDomain})
	if err != nil {
		t.Fatal(err)
	}
	// A new mirror sets up its link for a moment; cut then, it recovers only after the
	// server's retry backoff. The fleet starts from a mirror that follows its origin.
	testsupport.Until(t, 10*time.Second, "the mirror in contact with its origin", func() bool {
		info, err := mirror.Info(ctx)
		return err == nil && info.Mirror != nil && info.Mirror.Active >= 0
	})
	if f.issuer, err = devissuer.New("ES256", iss, aud); err != nil {
		t.Fatal(err)
	}
	f.jwks = filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(f.jwks, f.issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	f.pub = publish.New(f.hub, publish.Config{Stream: event.DefaultStream})
	return f
}

// token is a token whose jti is jti.
func (f *fleet) token(jti string) string {
	return f.issuer.Token("user-"+jti, time.Hour, jwt.MapClaims{"jti": jti})
}

// revoke publishes the revocation of jti in the hub and returns once the hub's stream
// has acknowledged it: from then on the promise holds.
func (f *fleet) revoke(t testing.TB, jti string) publish.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := f.pub.Publish(ctx, event.Event{Type: event.TypeJTI, JTI: jti, Iss: iss, Exp: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatalf("revoke %s in the hub: %v", jti, err)
	}
	return res
}

// waitMirrored waits until the region's mirror holds the hub's sequence seq. A sidecar
// is ready once caught up with the mirror as it stood when it started, and the mirror
// may lag its origin (milliseconds when linked, more while it catches up after a cut).
func (f *fleet) waitMirrored(t testing.TB, seq uint64) {
	t.Helper()
	testsupport.Until(t, 10*time.Second, fmt.Sprintf("sequence %d in the mirror", seq), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := f.region.Stream(ctx, event.DefaultStream)
		return err == nil && st.CachedInfo().State.LastSeq >= seq
	})
}

// regional is a sidecar of the region, on its own NATS server (the leaf node),
// following the mirror, checked over real gRPC as Envoy checks it.
type regional struct {
	t     testing.TB
	s     *sidecar.Sidecar
	authz authv3.AuthorizationClient
}

func (f *fleet) startSidecar(t testing.TB, extra ...string) *regional {
	t.Helper()
	args := append([]string{
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--admin-addr", "127.0.0.1:0",
		"--nats-url", f.Leaf.URL(), "--stream", event.DefaultStream,
		"--jwks-file", f.jwks, "--issuer", iss, "--audience", aud,
	}, extra...)
	cfg, err := sidecar.ParseSettings(args)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sidecar.Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &regional{t: t, s: s, authz: authv3.NewAuthorizationClient(conn)}
}

// check returns the gRPC status code of a Check of tok: OK, UNAUTHENTICATED (denied,
// revoked among others) or UNAVAILABLE (the sidecar not ready, or stale under deny).
func (r *regional) check(tok string) code.Code {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := r.authz.Check(ctx, envoyreq.Check(envoyreq.Bearer(tok)))
	if err != nil {
		r.t.Fatalf("Check: %v", err)
	}
	return code.Code(resp.GetStatus().GetCode())
}

func (r *regional) denies(tok string) bool { return r.check(tok) == code.Code_UNAUTHENTICATED }

// readyz is the status of the sidecar's /readyz.
func (r *regional) readyz() int {
	resp, err := http.Get("http://" + r.s.AdminAddr() + "/readyz")
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// staleness is revoked_sync_staleness_seconds, as Prometheus scrapes it.
func (r *regional) staleness() float64 {
	r.t.Helper()
	mfs, err := r.s.Registry.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "revoked_sync_staleness_seconds" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	r.t.Fatal("revoked_sync_staleness_seconds not registered")
	return 0
}
