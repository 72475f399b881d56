package natsconn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	natsjwt "github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/revoked-dev/revoked/internal/testnats"
)

func write(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// connect must succeed with good credentials and fail with bad ones.
func connect(t *testing.T, o Options) error {
	t.Helper()
	nc, err := o.Connect(nil, nats.RetryOnFailedConnect(false), nats.Timeout(2*time.Second))
	if err == nil {
		defer nc.Close()
		if err = nc.Flush(); err == nil && !nc.IsConnected() {
			t.Fatal("connected without error but not connected")
		}
	}
	return err
}

func TestUserPasswordAndToken(t *testing.T) {
	opts := testnats.Options(t)
	opts.Users = []*server.User{{Username: "revoked", Password: "s3cret"}}
	srv := testnats.StartWith(t, opts)
	if err := connect(t, Options{URL: srv.URL(), User: "revoked", Password: "s3cret"}); err != nil {
		t.Fatalf("user/password: %v", err)
	}
	if err := connect(t, Options{URL: srv.URL(), User: "revoked", Password: "wrong"}); err == nil {
		t.Fatal("wrong password accepted")
	}

	opts = testnats.Options(t)
	opts.Authorization = "tok-123"
	srv = testnats.StartWith(t, opts)
	if err := connect(t, Options{URL: srv.URL(), Token: "tok-123"}); err != nil {
		t.Fatalf("token: %v", err)
	}
	if err := connect(t, Options{URL: srv.URL(), Token: "nope"}); err == nil {
		t.Fatal("wrong token accepted")
	}
}

func TestNKey(t *testing.T) {
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	opts := testnats.Options(t)
	opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	srv := testnats.StartWith(t, opts)
	if err := connect(t, Options{URL: srv.URL(), NKeySeed: write(t, "user.nk", seed)}); err != nil {
		t.Fatalf("nkey: %v", err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	if err := connect(t, Options{URL: srv.URL(), NKeySeed: write(t, "other.nk", otherSeed)}); err == nil {
		t.Fatal("unknown nkey accepted")
	}
}

// A .creds file in operator mode: operator, account and user JWTs, as NATS deployments
// with decentralised auth issue them.
func TestCredsFile(t *testing.T) {
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	opJWT, err := natsjwt.NewOperatorClaims(opPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, _ := natsjwt.DecodeOperatorClaims(opJWT)
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	accJWT, err := natsjwt.NewAccountClaims(accPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	userJWT, err := natsjwt.NewUserClaims(userPub).Encode(acc)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := natsjwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}

	opts := testnats.Options(t)
	opts.JetStream = false
	opts.TrustedOperators = []*natsjwt.OperatorClaims{opClaims}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	opts.AccountResolver = resolver
	srv := testnats.StartWith(t, opts)
	if err := connect(t, Options{URL: srv.URL(), Creds: write(t, "user.creds", creds)}); err != nil {
		t.Fatalf("creds: %v", err)
	}
	if err := connect(t, Options{URL: srv.URL()}); err == nil {
		t.Fatal("anonymous connection accepted in operator mode")
	}
}

func TestTLS(t *testing.T) {
	ca, caKey := newCA(t)
	serverCert := leaf(t, ca, caKey, "server", x509.ExtKeyUsageServerAuth)
	clientCert := leaf(t, ca, caKey, "revoked", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	opts := testnats.Options(t)
	opts.TLS = true
	opts.TLSVerify = true // mutual TLS: the client must present a certificate
	opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverCert.pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	srv := testnats.StartWith(t, opts)
	caFile := write(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	url := "tls://" + srv.Addr().String()
	if err := connect(t, Options{URL: url, TLSCA: caFile, TLSCert: clientCert.certFile, TLSKey: clientCert.keyFile}); err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	if err := connect(t, Options{URL: url, TLSCA: caFile}); err == nil {
		t.Fatal("connected without a client certificate")
	}
}

func TestValidate(t *testing.T) {
	for name, o := range map[string]Options{
		"no url":        {},
		"two auths":     {URL: DefaultURL, Token: "t", Creds: "c"},
		"cert, no key":  {URL: DefaultURL, TLSCert: "c"},
		"key, no cert":  {URL: DefaultURL, TLSKey: "k"},
		"nkey and user": {URL: DefaultURL, NKeySeed: "s", User: "u"},
	} {
		if o.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "revoked test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

type leafCert struct {
	pair              tls.Certificate
	certFile, keyFile string
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) leafCert {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return leafCert{pair: pair, certFile: write(t, cn+".pem", certPEM), keyFile: write(t, cn+"-key.pem", keyPEM)}
}
