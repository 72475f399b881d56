package sync

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// helmCA makes what the revoked chart renders into the sidecars' ConfigMap: Helm's
// genCAWithKey (sprig v3.3.0, generateCertificateAuthorityWithKeyInternal) over the key
// genPrivateKey "ed25519" made: a self-signed CA certificate holding the public key.
func helmCA(t *testing.T, priv crypto.Signer, notBefore, notAfter time.Time) []byte {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "revoked snapshot signing"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// The chart generates the signing key itself and can only publish its public half as a
// certificate: a sidecar trusts the key in it, and a snapshot signed with the private key
// (PKCS#8, as genPrivateKey writes it) verifies with it.
func TestSnapshotPublicKeyFromHelmCertificate(t *testing.T) {
	privPEM, _, err := GenerateSnapshotKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParseSnapshotSigningKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	certPEM := helmCA(t, priv, now, now.Add(3650*24*time.Hour))
	keys, err := ParseSnapshotPublicKeys(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !keys[0].Equal(priv.Public()) {
		t.Fatalf("keys %x, want the signing key's public half %x", keys, priv.Public())
	}

	s := &Snapshot{Stream: "REVOCATIONS", Subjects: "revocations.>", Created: now, Sequence: 2, BuiltAt: now,
		JTI: []SnapshotJTI{{Iss: "https://idp", JTI: "t1", Exp: now.Add(time.Hour).Unix()}}}
	b, err := s.MarshalSigned(priv)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseSnapshot(b, keys); err != nil || len(got.JTI) != 1 {
		t.Fatalf("snapshot signed with the chart's key, checked with its certificate: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	if _, err := ParseSnapshot(b, []ed25519.PublicKey{other.Public().(ed25519.PublicKey)}); !errors.Is(err, ErrSnapshotSignature) {
		t.Fatalf("checked with another key: %v, want ErrSnapshotSignature", err)
	}

	// The certificate only carries the key: one long expired (or not yet valid) still
	// gives it, next to a bare PUBLIC KEY block during a rotation.
	_, newPubPEM, err := GenerateSnapshotKey()
	if err != nil {
		t.Fatal(err)
	}
	expired := helmCA(t, priv, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	keys, err = ParseSnapshotPublicKeys(append(expired, newPubPEM...))
	if err != nil || len(keys) != 2 || !keys[0].Equal(priv.Public()) {
		t.Fatalf("expired certificate and a public key: %d keys, %v", len(keys), err)
	}
	if _, err := ParseSnapshot(b, keys); err != nil {
		t.Fatalf("snapshot checked with the expired certificate's key: %v", err)
	}
}

// A certificate of another kind of key is refused at start, saying why: it cannot check
// an Ed25519 signature, and a sidecar trusting nothing would replay in silence.
func TestSnapshotPublicKeyCertificateNotEd25519(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	_, err = ParseSnapshotPublicKeys(helmCA(t, ec, now, now.Add(time.Hour)))
	if err == nil || !strings.Contains(err.Error(), "not an Ed25519 key") || !strings.Contains(err.Error(), "CERTIFICATE") {
		t.Fatalf("ECDSA certificate: %v, want a refusal naming the block and Ed25519", err)
	}
	for name, in := range map[string]string{
		"not PEM":             "MCowBQYDK2VwAyEAL2ma0PGQfLegNBh3FUI9OPdQw9DqOPH0g+li2VNMC+w=",
		"private key":         "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKzenGWqhRvRrWYyatQ0xn+2z7kOu+40Jy+9gRw/xlKj\n-----END PRIVATE KEY-----\n",
		"garbage certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
	} {
		if _, err := ParseSnapshotPublicKeys([]byte(in)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
