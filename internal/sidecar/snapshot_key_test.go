package sidecar

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
	revsync "github.com/revoked-dev/revoked/sync"
)

// snapshotKeyCase is a stream with a signed snapshot in its bucket and events after it:
// what a sidecar of an application namespace finds when the chart enables snapshots.
type snapshotKeyCase struct {
	h       *harness
	bucket  string
	certPEM []byte   // the public key as the chart publishes it: a certificate
	revoked []string // tokens revoked before and after the snapshot
}

func newSnapshotKeyCase(t *testing.T) *snapshotKeyCase {
	h := newHarness(t)
	c := &snapshotKeyCase{h: h, bucket: "revoked-snapshots"}
	js := h.nats.CreateStream(stream.Settings{})
	revoke := func(js jetstream.JetStream) {
		jti := devissuer.RandomID()
		c.revoked = append(c.revoked, h.issuer.Token("u-"+jti, time.Hour, jwt.MapClaims{"jti": jti}))
		h.publish(js, "revocations.jti", fmt.Sprintf(`{"type":"jti","jti":%q,"exp":%d,"iss":%q}`, jti, time.Now().Add(time.Hour).Unix(), iss))
	}
	for range 3 {
		revoke(js)
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := revsync.BuildSnapshot(ctx, js, revsync.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := revsync.WriteSnapshot(ctx, js, c.bucket, snap, priv); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		revoke(js)
	}
	// Helm's genCAWithKey over the chart's generated key: a self-signed CA certificate.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "revoked snapshot signing"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	c.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return c
}

// start runs the sidecar on the bucket with keyFile, its log kept.
func (c *snapshotKeyCase) start(t *testing.T, keyFile string) *testsupport.LogBuffer {
	h := c.h
	cfg, err := ParseSettings([]string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--nats-url", h.nats.URL(), "--jwks-file", h.jwks, "--issuer", iss, "--audience", aud,
		"--snapshot-bucket", c.bucket, "--snapshot-public-key", keyFile})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.LogBuffer{}
	h.s, err = Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("a sidecar whose snapshot key is not there did not start: %v", err)
	}
	t.Cleanup(h.s.Close)
	testsupport.Until(t, 20*time.Second, "ready", h.s.Ready)
	return logs
}

// checkEveryRevocation: every token revoked, before or after the snapshot, is denied.
func (c *snapshotKeyCase) checkEveryRevocation(t *testing.T) {
	t.Helper()
	for i, tok := range c.revoked {
		if d := c.h.s.Authorizer.Check("Bearer " + tok); d.Allowed() || d.Reason.Description() != "token revoked" {
			t.Errorf("revocation %d of %d not enforced once ready: %s", i+1, len(c.revoked), d.Reason.Description())
		}
	}
}

// An application's namespace may not hold the key ConfigMap (the chart mounts it
// optional): the directory is there, the file is not, or the key in it is empty. The
// sidecar starts, replays the whole stream, is ready with every revocation, and says why
// it took no snapshot: a loud log line and revoked_snapshot_loads_total{result="no_key"}.
func TestSnapshotKeyMissingReplaysEverything(t *testing.T) {
	for name, write := range map[string]func(path string) error{
		"no file":    func(string) error { return nil },
		"empty file": func(p string) error { return os.WriteFile(p, []byte("\n"), 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			c := newSnapshotKeyCase(t)
			keyFile := filepath.Join(t.TempDir(), "snapshot.pub")
			if err := write(keyFile); err != nil {
				t.Fatal(err)
			}
			logs := c.start(t, keyFile)
			c.checkEveryRevocation(t)
			_, metrics := c.h.get("/metrics")
			for _, want := range []string{`revoked_snapshot_loads_total{result="no_key"} 1`, `revoked_snapshot_loads_total{result="ok"} 0`,
				fmt.Sprintf("revoked_sync_last_sequence %d", len(c.revoked))} {
				if !strings.Contains(metrics, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			for _, want := range []string{"snapshot public key file missing or empty", keyFile, "replaying the whole stream"} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log does not say %q:\n%s", want, logs)
				}
			}
		})
	}
}

// The key as the chart publishes it, a certificate: the sidecar loads the snapshot and
// replays only the events after it.
func TestSnapshotKeyCertificateLoads(t *testing.T) {
	c := newSnapshotKeyCase(t)
	keyFile := filepath.Join(t.TempDir(), "snapshot.pub")
	if err := os.WriteFile(keyFile, c.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := c.start(t, keyFile)
	c.checkEveryRevocation(t)
	if _, metrics := c.h.get("/metrics"); !strings.Contains(metrics, `revoked_snapshot_loads_total{result="ok"} 1`) {
		t.Errorf("snapshot not loaded with the certificate's key:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "snapshot loaded") {
		t.Errorf("log does not say the snapshot was loaded:\n%s", logs)
	}
}
