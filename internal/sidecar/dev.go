package sidecar

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/flags"
	"github.com/revoked-dev/revoked/stream"
)

// DevIssuer and DevAudience are the iss and aud of dev-mode tokens.
const (
	DevIssuer   = "https://dev.revoked.local"
	DevAudience = "dev-api"
)

// devEnv is what --dev runs beside the sidecar: an embedded NATS server with JetStream,
// the stream, and a signing key whose JWKS the sidecar trusts.
type devEnv struct {
	dir    string
	jwks   string // the JWKS file of issuer
	nats   *server.Server
	issuer *devissuer.Issuer
}

func startDev(ctx context.Context, cfg Settings, log *slog.Logger) (*devEnv, error) {
	dir, err := os.MkdirTemp("", "revoked-dev-")
	if err != nil {
		return nil, err
	}
	d := &devEnv{dir: dir}
	// The contract's default port when it is free, so that the printed commands work
	// with their defaults; any free port otherwise.
	for _, port := range []int{4222, -1} {
		if d.nats, err = startNATS(filepath.Join(dir, "jetstream"), port); err == nil {
			break
		}
	}
	if err != nil {
		d.close()
		return nil, err
	}
	nc, err := nats.Connect(d.nats.ClientURL())
	if err != nil {
		d.close()
		return nil, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := stream.Ensure(ctx, js, stream.Settings{Name: cfg.Stream, SubjectPrefix: cfg.SubjectPrefix, MaxTokenLifetime: cfg.MaxTokenLife}); err != nil {
		d.close()
		return nil, err
	}
	if d.issuer, err = devissuer.New("EdDSA", DevIssuer, DevAudience); err != nil {
		d.close()
		return nil, err
	}
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, d.issuer.JWKS(), 0o600); err != nil {
		d.close()
		return nil, err
	}
	d.jwks = jwks
	log.Info("dev mode: embedded NATS with JetStream", "url", d.nats.ClientURL(), "jwks", jwks)
	return d, nil
}

// settings returns cfg pointed at the embedded NATS server and the dev issuer's keys.
func (d *devEnv) settings(cfg Settings) Settings {
	cfg.NATS.URL = d.nats.ClientURL()
	cfg.JWKSFile, cfg.JWKSURL = d.jwks, ""
	cfg.Issuers = flags.Strings{DevIssuer}
	cfg.Audiences = flags.Strings{DevAudience}
	return cfg
}

func startNATS(storeDir string, port int) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{
		ServerName: "revoked-dev", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: storeDir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("dev nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("dev nats did not start on port %d", port)
	}
	return ns, nil
}

// Token mints a dev token for sub, valid for an hour.
func (d *devEnv) token(sub string) string { return d.issuer.Token(sub, time.Hour, nil) }

func (d *devEnv) tokenHandler(w http.ResponseWriter, r *http.Request) {
	sub := r.URL.Query().Get("sub")
	if sub == "" {
		sub = "alice"
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, d.token(sub))
}

func (d *devEnv) close() {
	if d.nats != nil {
		d.nats.Shutdown()
		d.nats.WaitForShutdown()
	}
	_ = os.RemoveAll(d.dir)
}

// PrintDevBanner writes, for a newcomer, a sample token and the commands that check
// and revoke it.
func (s *Sidecar) PrintDevBanner(w io.Writer) {
	if s.dev == nil {
		return
	}
	tok := s.dev.token("alice")
	fmt.Fprintf(w, `
revoked is running in dev mode.
  ext_authz gRPC   %s
  ext_authz HTTP   %s
  admin            http://%s  (/readyz, /metrics, /dev/token?sub=NAME mints a token)
  NATS (embedded)  %s

A sample token for sub "alice", valid for an hour:

  TOKEN=%s

Check it as Envoy would (gRPC), or through the HTTP mode:

  go run ./cmd/revokectl check --addr %s "$TOKEN"
  curl -i -H "authorization: Bearer $TOKEN" http://%s/

Revoke it, then check again (denied: 401 "token revoked"):

  go run ./cmd/revokectl revoke token --nats-url %s "$TOKEN"

or publish the event yourself with the nats CLI:

  nats --server %s pub revocations.cutoff '{"type":"cutoff","claim":"sub","value":"alice","not_before":'$(date +%%s)'}'

`, s.grpcAddr, s.httpAddr, s.adminAddr, s.cfg.NATS.URL, tok, s.grpcAddr, s.httpAddr, s.cfg.NATS.URL, s.cfg.NATS.URL)
}
