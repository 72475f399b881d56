package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/flags"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/jwtkeys"
	"github.com/revoked-dev/revoked/stream"
)

const (
	testIssuer   = "https://idp.example.com"
	testRP       = "rp-client-1"
	testBearer   = "s3cret-bearer-token-for-tests"
	testAudience = "orders-api"
)

// signer is an ES256 key published in a JWKS file under kid.
type signer struct {
	key *ecdsa.PrivateKey
	kid string
}

func newSigner(t testing.TB, kid string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{k, kid}
}

func (s signer) jwk() map[string]string {
	pad := func(b []byte) []byte { return append(make([]byte, 32-len(b)), b...) }
	return map[string]string{
		"kty": "EC", "crv": "P-256", "kid": s.kid, "alg": "ES256", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(pad(s.key.X.Bytes())),
		"y": base64.RawURLEncoding.EncodeToString(pad(s.key.Y.Bytes())),
	}
}

func writeJWKS(t testing.TB, dir string, signers ...signer) string {
	t.Helper()
	var keys []map[string]string
	for _, s := range signers {
		keys = append(keys, s.jwk())
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	p := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (s signer) sign(t testing.TB, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = s.kid
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	raw, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// fixture is an ingest server on a real NATS server with the stream.
type fixture struct {
	t      *testing.T
	srv    *Server
	nats   *testsupport.NATS
	js     jetstream.JetStream
	base   string
	admin  string
	client *http.Client
	key    signer
	reg    *prometheus.Registry
	cfg    *Config
}

func writeSecret(t testing.TB, dir, name, secret string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testConfig(t *testing.T, natsURL string, key signer) *Config {
	dir := t.TempDir()
	cfg := &Config{
		Listen: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		BearerTokenFile: writeSecret(t, dir, "bearer", testBearer),
		JWKSFile:        writeJWKS(t, dir, key),
		Issuers:         []string{testIssuer},
		Leeway:          30 * time.Second,
		LogoutAudiences: []string{testRP},
		LogoutMaxAge:    time.Minute, // with 2 × 30 s leeway, the stream's 2-minute duplicate window
		Events:          flags.Events{Stream: event.DefaultStream, SubjectPrefix: event.DefaultSubjectPrefix},
		AckTimeout:      300 * time.Millisecond,
		Attempts:        2,
		MaxBody:         DefaultMaxBody,
	}
	cfg.NATS.URL = natsURL
	return cfg
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	key := newSigner(t, "k1")
	cfg := testConfig(t, ns.URL(), key)
	if mod != nil {
		mod(cfg)
	}
	f := &fixture{t: t, nats: ns, js: js, key: key, cfg: cfg, reg: prometheus.NewPedanticRegistry()}
	f.start()
	return f
}

func (f *fixture) start() {
	t := f.t
	t.Helper()
	srv, err := Start(context.Background(), f.cfg, nil, f.reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	f.srv = srv
	scheme := "http"
	if f.cfg.TLSCert != "" {
		scheme = "https"
	}
	f.base = scheme + "://" + srv.Addr()
	f.admin = "http://" + srv.AdminAddr()
	if f.client == nil {
		f.client = &http.Client{Timeout: 20 * time.Second}
	}
	waitFor(t, 10*time.Second, func() bool { return srv.Ready(context.Background()) == nil })
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type resp struct {
	code   int
	header http.Header
	body   string
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func (f *fixture) do(method, path, contentType string, body io.Reader, header map[string]string) resp {
	f.t.Helper()
	req, err := http.NewRequest(method, f.base+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, string(b)}
}

var bearer = map[string]string{"Authorization": "Bearer " + testBearer}

func (f *fixture) postJSON(body string, header map[string]string) resp {
	f.t.Helper()
	return f.do(http.MethodPost, "/v1/revocations", "application/json", strings.NewReader(body), header)
}

func (f *fixture) postForm(path string, form url.Values, header map[string]string) resp {
	f.t.Helper()
	return f.do(http.MethodPost, path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()), header)
}

// events returns the events in the stream.
func (f *fixture) events() []event.Event {
	f.t.Helper()
	ctx := context.Background()
	st, err := f.js.Stream(ctx, event.DefaultStream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var evs []event.Event
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			f.t.Fatal(err)
		}
		ev, err := event.Decode(m.Data, nil)
		if err != nil {
			f.t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// metric returns the value of a counter with the given labels, from the registry.
func (f *fixture) metric(name string, labels map[string]string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// pki is a CA with a server certificate written to files, and client certificates on demand.
type pki struct {
	*testsupport.CA
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca := testsupport.NewCA(t)
	server := ca.Issue(t, "localhost", x509.ExtKeyUsageServerAuth)
	return &pki{CA: ca, caFile: ca.File, certFile: server.CertFile, keyFile: server.KeyFile, pool: ca.Pool}
}

func (p *pki) clientCert(t *testing.T) tls.Certificate {
	return p.Issue(t, "idp-client", x509.ExtKeyUsageClientAuth).Pair
}

func stdB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func readAll(res *http.Response) string {
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func newKeysForTest(ctx context.Context, file string) (*jwtkeys.Keys, error) {
	return jwtkeys.New(ctx, jwtkeys.Config{File: file}, nil)
}
