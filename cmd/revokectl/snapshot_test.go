package main

import (
	"context"
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

	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/sidecar"
	"github.com/revoked-dev/revoked/internal/testsupport"
	revsync "github.com/revoked-dev/revoked/sync"
)

// A sidecar started from a snapshot enforces the events before it (from the snapshot)
// and after it (replayed from the stream), and not only those: nothing is lost. The
// snapshot job knows nothing of the sidecar's policy (its --cutoff-claim tenant): the
// tenant cutoff before the snapshot is enforced too (issue 9 row 7).
func TestSnapshotColdStart(t *testing.T) {
	const iss, aud = "https://idp.example.com", "orders-api"
	ns := testsupport.StartNATS(t)
	natsFlag := "--nats-url=" + ns.URL()
	cli(t, "", "stream", "init", natsFlag).want(t, exitOK)
	issuer, err := devissuer.New("EdDSA", iss, aud)
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}

	var before, after []string
	for i := 0; i < 20; i++ {
		before = append(before, issuer.Token(fmt.Sprint("early-", i), time.Hour, nil))
	}
	for _, tok := range before[:10] {
		cli(t, "", "revoke", "token", tok, natsFlag).want(t, exitOK)
	}
	cli(t, "", "revoke", "sub", "early-15", natsFlag, "--not-before", time.Now().Add(2*time.Second).UTC().Format(time.RFC3339)).want(t, exitOK)
	cli(t, fmt.Sprintf(`{"type":"cutoff","claim":"tenant","value":"acme","not_before":%d}`, time.Now().Unix()+1),
		"import", "-", "--cutoff-claim", "tenant", natsFlag).want(t, exitOK)
	tenantTok := issuer.Token("someone", time.Hour, jwt.MapClaims{"tenant": "acme"})
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "snapshot.key"), filepath.Join(dir, "snapshot.pub")
	cli(t, "", "snapshot", "keygen", "--private-key", priv, "--public-key", pub).want(t, exitOK)
	r := cli(t, "", "snapshot", natsFlag, "--signing-key", priv).want(t, exitOK)
	if !strings.Contains(r.stdout, "sequence 12") || !strings.Contains(r.stdout, "10 jti entries, 2 cutoffs") {
		t.Fatalf("snapshot printed %q", r.stdout)
	}
	r = cli(t, "", "snapshot", "verify", natsFlag, "--public-key", pub).want(t, exitOK)
	if !strings.Contains(r.stdout, "at sequence 12, signed") || !strings.Contains(r.stdout, "usable") {
		t.Fatalf("snapshot verify printed %q", r.stdout)
	}
	for i := 0; i < 5; i++ {
		tok := issuer.Token(fmt.Sprint("late-", i), time.Hour, jwt.MapClaims{})
		after = append(after, tok)
		cli(t, "", "revoke", "token", tok, natsFlag).want(t, exitOK)
	}

	cfg, err := sidecar.ParseSettings([]string{
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--admin-addr", "127.0.0.1:0",
		"--nats-url", ns.URL(), "--jwks-file", jwks, "--issuer", iss, "--audience", aud,
		"--snapshot-bucket", DefaultSnapshotBucket, "--snapshot-public-key", pub, "--cutoff-claim", "tenant",
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs testsupport.LogBuffer
	sc, err := sidecar.Start(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.Close)
	poll(t, "sidecar ready", sc.Ready)
	if got := sc.Replica.LastSequence(); got != 17 {
		t.Fatalf("last sequence %d, want 17", got)
	}
	if !strings.Contains(logs.String(), `"msg":"snapshot loaded","sequence":12`) {
		t.Fatalf("the sidecar did not start from the snapshot:\n%s", logs.String())
	}
	for i, tok := range before {
		d := sc.Authorizer.Decide("Bearer "+tok, time.Now())
		revoked := i < 10 || i == 15
		if d.Allowed() == revoked {
			t.Errorf("early-%d: %v, revoked %v", i, d.Reason, revoked)
		}
	}
	for i, tok := range after {
		if d := sc.Authorizer.Decide("Bearer "+tok, time.Now()); d.Allowed() {
			t.Errorf("late-%d, revoked after the snapshot, allowed", i)
		}
	}
	if d := sc.Authorizer.Decide("Bearer "+tenantTok, time.Now()); d.Allowed() {
		t.Error("a token of tenant acme, revoked before the snapshot, allowed")
	}
}

// openssl's Ed25519 key pair, as the chart's documentation creates it (openssl genpkey
// -algorithm ed25519; openssl pkey -pubout).
const (
	opensslKey = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIF0liwd80xdfLhnUtB+1XZJf7zEZil2S/gQaDkMdbYVb
-----END PRIVATE KEY-----
`
	opensslPub = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAL2ma0PGQfLegNBh3FUI9OPdQw9DqOPH0g+li2VNMC+w=
-----END PUBLIC KEY-----
`
)

// The snapshot commands' keys and checks: snapshot refuses to run without a signing key;
// keygen writes a pair (the private key readable by its owner only) and never
// overwrites; openssl's keys work; verify fails with another key than the signer's.
func TestSnapshotKeys(t *testing.T) {
	srv, _ := natsEnv(t)
	natsFlag := "--nats-url=" + srv.URL()
	r := cli(t, "", "snapshot", natsFlag).want(t, exitUsage)
	if !strings.Contains(r.stderr, "--signing-key is required") {
		t.Fatalf("stderr %q", r.stderr)
	}
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")
	r = cli(t, "", "snapshot", "keygen", "--private-key", priv, "--public-key", pub).want(t, exitOK)
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(pub); string(b) != r.stdout || !strings.HasPrefix(r.stdout, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("public key printed %q, written %q", r.stdout, b)
	}
	before, _ := os.ReadFile(priv)
	cli(t, "", "snapshot", "keygen", "--private-key", priv).want(t, exitFailed)
	if after, _ := os.ReadFile(priv); string(after) != string(before) {
		t.Fatal("keygen overwrote a private key")
	}

	okey, opub := filepath.Join(dir, "openssl.key"), filepath.Join(dir, "openssl.pub")
	if err := os.WriteFile(okey, []byte(opensslKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(opub, []byte(opensslPub), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, "", "revoke", "jti", "j1", "--exp", "+1h", natsFlag).want(t, exitOK)
	cli(t, "", "snapshot", natsFlag, "--signing-key", okey).want(t, exitOK)
	cli(t, "", "snapshot", "verify", natsFlag, "--public-key", opub).want(t, exitOK)
	r = cli(t, "", "snapshot", "verify", natsFlag, "--public-key", pub).want(t, exitFailed)
	if !strings.Contains(r.stderr, "NOT usable") || !strings.Contains(r.stderr, "signature") {
		t.Fatalf("verify with another key: %q", r.stderr)
	}
	// The public key as the chart publishes it: in a certificate (Helm's genCAWithKey).
	ocert := filepath.Join(dir, "openssl.crt")
	if err := os.WriteFile(ocert, certificateOf(t, opensslKey), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, "", "snapshot", "verify", natsFlag, "--public-key", ocert).want(t, exitOK)
	// A public key where the private key belongs, and the reverse.
	cli(t, "", "snapshot", natsFlag, "--signing-key", opub).want(t, exitFailed)
	cli(t, "", "snapshot", "verify", natsFlag, "--public-key", okey).want(t, exitFailed)
}

// A sidecar whose --snapshot-public-key is not a public key does not start: it says
// which flag is wrong instead of running without snapshots. (A missing or empty file is
// no mistake but a key not published in the namespace: the sidecar starts and replays,
// internal/sidecar's TestSnapshotKeyMissingReplaysEverything.)
func TestSidecarRefusesBadSnapshotKey(t *testing.T) {
	ns := testsupport.StartNATS(t)
	issuer, err := devissuer.New("EdDSA", "https://idp.example.com", "api")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jwks, key := filepath.Join(dir, "jwks.json"), filepath.Join(dir, "snapshot.key")
	if err := os.WriteFile(jwks, issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte(opensslKey), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{key} {
		cfg, err := sidecar.ParseSettings([]string{
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--admin-addr", "127.0.0.1:0",
			"--nats-url", ns.URL(), "--jwks-file", jwks, "--snapshot-bucket", DefaultSnapshotBucket, "--snapshot-public-key", path,
		})
		if err != nil {
			t.Fatal(err)
		}
		sc, err := sidecar.Start(context.Background(), cfg, nil)
		if err == nil {
			sc.Close()
			t.Fatalf("%s: the sidecar started", path)
		}
		if !strings.Contains(err.Error(), "--snapshot-public-key") {
			t.Fatalf("%s: %v", path, err)
		}
	}
}

// certificateOf returns a self-signed CA certificate of the Ed25519 key in keyPEM, as
// Helm's genCAWithKey makes it in the revoked chart.
func certificateOf(t *testing.T, keyPEM string) []byte {
	t.Helper()
	priv, err := revsync.ParseSnapshotSigningKey([]byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "revoked snapshot signing"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
