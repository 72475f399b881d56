package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	natsjwt "github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/revoked-dev/revoked/internal/testsupport"
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
	opts := testsupport.NATSOptions(t)
	opts.Users = []*server.User{{Username: "revoked", Password: "s3cret"}}
	srv := testsupport.StartNATSWith(t, opts)
	if err := connect(t, Options{URL: srv.URL(), User: "revoked", Password: "s3cret"}); err != nil {
		t.Fatalf("user/password: %v", err)
	}
	if err := connect(t, Options{URL: srv.URL(), User: "revoked", Password: "wrong"}); err == nil {
		t.Fatal("wrong password accepted")
	}

	opts = testsupport.NATSOptions(t)
	opts.Authorization = "tok-123"
	srv = testsupport.StartNATSWith(t, opts)
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
	opts := testsupport.NATSOptions(t)
	opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	srv := testsupport.StartNATSWith(t, opts)
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

	opts := testsupport.NATSOptions(t)
	opts.JetStream = false
	opts.TrustedOperators = []*natsjwt.OperatorClaims{opClaims}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	opts.AccountResolver = resolver
	srv := testsupport.StartNATSWith(t, opts)
	if err := connect(t, Options{URL: srv.URL(), Creds: write(t, "user.creds", creds)}); err != nil {
		t.Fatalf("creds: %v", err)
	}
	if err := connect(t, Options{URL: srv.URL()}); err == nil {
		t.Fatal("anonymous connection accepted in operator mode")
	}
}

func TestTLS(t *testing.T) {
	ca := testsupport.NewCA(t)
	serverCert := ca.Issue(t, "server", x509.ExtKeyUsageServerAuth)
	clientCert := ca.Issue(t, "revoked", x509.ExtKeyUsageClientAuth)

	opts := testsupport.NATSOptions(t)
	opts.TLS = true
	opts.TLSVerify = true // mutual TLS: the client must present a certificate
	opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverCert.Pair}, ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	srv := testsupport.StartNATSWith(t, opts)
	url := "tls://" + srv.Addr().String()
	if err := connect(t, Options{URL: url, TLSCA: ca.File, TLSCert: clientCert.CertFile, TLSKey: clientCert.KeyFile}); err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	if err := connect(t, Options{URL: url, TLSCA: ca.File}); err == nil {
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
