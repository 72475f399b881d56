package authz

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/jwtkeys"
)

// hostileEnv is a self-contained authorizer over one Ed25519 key whose private half the
// test holds, so that it can sign tokens with any header it likes, behind a real gRPC
// server on loopback made as the sidecar makes it (newCheckServer).
type hostileEnv struct {
	priv    ed25519.PrivateKey
	kid     string
	a       *Authorizer
	reg     *prometheus.Registry
	client  authv3.AuthorizationClient
	fetches atomic.Int64 // requests to the test's "elsewhere" server
	far     string       // URL of that server
}

const hostileIss, hostileAud = "https://idp.hostile.test", "api"

func newHostileEnv(t *testing.T) *hostileEnv { return newHostileEnvTB(t) }

func newHostileEnvTB(t testing.TB) *hostileEnv {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := &hostileEnv{priv: priv, kid: "key-1", reg: prometheus.NewPedanticRegistry()}
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub),
		"kid": e.kid, "alg": "EdDSA", "use": "sig",
	}}})
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	keys, err := jwtkeys.New(ctx, jwtkeys.Config{File: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(keys, VerifierConfig{Issuers: []string{hostileIss}, Audiences: []string{hostileAud},
		Leeway: 5 * time.Second, RequireJTI: true, CutoffClaims: []string{"sub", "sid", "client_id", "tenant"}})
	e.a = NewAuthorizer(v, blocklist.New(), Options{CacheSize: 100, Metrics: NewMetrics(e.reg)})
	e.a.SetGate(ReasonOK)

	// The server jku, x5u and friends point at: it must never be asked anything.
	far := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.fetches.Add(1)
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(far.Close)
	e.far = far.URL

	e.client = newCheckServer(t, e.a) // the production server options: the partial decoder
	return e
}

func (e *hostileEnv) claims() map[string]any {
	now := time.Now()
	return map[string]any{"iss": hostileIss, "aud": hostileAud, "sub": "alice", "jti": "jti-" + now.Format("150405.000000000"),
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// signRaw signs the given header and payload bytes as they are (so that they may hold
// anything: nesting, invalid UTF-8) with key.
func signRaw(key ed25519.PrivateKey, header, payload []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	in := enc(header) + "." + enc(payload)
	return in + "." + enc(ed25519.Sign(key, []byte(in)))
}

// sign signs claims with key under header (alg EdDSA is set), as JSON.
func sign(key ed25519.PrivateKey, header, claims map[string]any) string {
	h := map[string]any{"alg": "EdDSA", "typ": "JWT"}
	for k, v := range header {
		h[k] = v
	}
	hb, _ := json.Marshal(h)
	pb, _ := json.Marshal(claims)
	return signRaw(key, hb, pb)
}

func (e *hostileEnv) token(header, extra map[string]any) string {
	c := e.claims()
	for k, v := range extra {
		c[k] = v
	}
	h := map[string]any{"kid": e.kid}
	for k, v := range header {
		h[k] = v
	}
	return sign(e.priv, h, c)
}

func nested(depth int) json.RawMessage {
	return json.RawMessage(strings.Repeat("[", depth) + strings.Repeat("]", depth))
}

// TestHostileInput is the hostile input table of issue 6, over real gRPC: each case gets
// a clear answer (a 401 with its reason, or an allow where the token is genuinely
// valid), the denials are counted in revoked_checks_total, nothing is fetched from
// where a token points, nothing panics, and the heap does not grow with repetition.
func TestHostileInput(t *testing.T) {
	e := newHostileEnv(t)
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	attackerPub := attacker.Public().(ed25519.PublicKey)
	attackerJWK := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(attackerPub)}
	big := strings.Repeat("a", 1<<20)
	many := func(n int) map[string]string {
		h := make(map[string]string, n)
		for i := range n {
			h["x-h"+strconv.Itoa(i)] = "v"
		}
		return h
	}
	bearer := func(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }
	with := func(h map[string]string, k, v string) map[string]string { h[k] = v; return h }

	type tcase struct {
		name    string
		headers map[string]string
		raw     []*corev3.HeaderValue // header_map, raw bytes (Envoy's encode_raw_headers)
		want    Reason
	}
	cases := []tcase{
		{"authorization header of 1 MiB", map[string]string{"authorization": "Bearer " + big}, nil, ReasonMalformed},
		{"1 MiB token-shaped header", map[string]string{"authorization": "Bearer " + big[:1<<19] + "." + big[:1<<18] + "." + big[:1<<18]}, nil, ReasonMalformed},
		{"another header of 1 MiB, valid token", with(bearer(e.token(nil, nil)), "x-big", big), nil, ReasonOK},
		{"10,000 headers, no token", many(10_000), nil, ReasonMissingToken},
		{"10,000 headers and a valid token", with(many(10_000), "authorization", "Bearer "+e.token(nil, nil)), nil, ReasonOK},
		{"validly signed JWT with a 100 KB payload", bearer(e.token(nil, map[string]any{"pad": strings.Repeat("p", 100_000)})), nil, ReasonMalformed},
		{"5,000 levels of nested JSON in an unknown claim", bearer(e.token(nil, map[string]any{"deep": nested(5000)})), nil, ReasonOK},
		{"5,000 levels of nested JSON in an extra cutoff claim", bearer(e.token(nil, map[string]any{"tenant": nested(5000)})), nil, ReasonOK},
		{"nested JSON as aud", bearer(e.token(nil, map[string]any{"aud": nested(3000)})), nil, ReasonMalformed},
		{"nested JSON as sub", bearer(e.token(nil, map[string]any{"sub": nested(3000)})), nil, ReasonMalformed},
		{"nested JSON as the header's kid", bearer(e.token(map[string]any{"kid": nested(3000)}, nil)), nil, ReasonUnknownKey},
		{"crit header, signed with the real key", bearer(e.token(map[string]any{"crit": []string{"exp"}, "exp": 1}, nil)), nil, ReasonMalformed},
		{"crit header, empty list", bearer(e.token(map[string]any{"crit": []string{}}, nil)), nil, ReasonMalformed},
		{"jku pointing elsewhere, attacker key", bearer(sign(attacker, map[string]any{"kid": "attacker", "jku": e.far + "/jwks.json"}, e.claims())), nil, ReasonUnknownKey},
		{"jku pointing elsewhere, real kid", bearer(sign(attacker, map[string]any{"kid": e.kid, "jku": e.far + "/jwks.json"}, e.claims())), nil, ReasonBadSignature},
		{"x5u pointing elsewhere", bearer(sign(attacker, map[string]any{"kid": "attacker", "x5u": e.far + "/cert.pem"}, e.claims())), nil, ReasonUnknownKey},
		{"jwk header with the attacker's key and the real kid", bearer(sign(attacker, map[string]any{"kid": e.kid, "jwk": attackerJWK}, e.claims())), nil, ReasonBadSignature},
		// Without a kid the JWKS's public keys are tried; the embedded key never is.
		{"jwk header with the attacker's key, no kid", bearer(sign(attacker, map[string]any{"jwk": attackerJWK}, e.claims())), nil, ReasonBadSignature},
		{"x5c header with junk", bearer(sign(attacker, map[string]any{"kid": e.kid, "x5c": []string{"MIIB" + strings.Repeat("A", 200)}}, e.claims())), nil, ReasonBadSignature},
		{"kid with path traversal", bearer(e.token(map[string]any{"kid": "../../../../../../etc/passwd"}, nil)), nil, ReasonUnknownKey},
		{"kid with path traversal to the real kid", bearer(e.token(map[string]any{"kid": "../" + e.kid}, nil)), nil, ReasonUnknownKey},
		{"kid of 8 KB", bearer(e.token(map[string]any{"kid": strings.Repeat("k", 8000)}, nil)), nil, ReasonUnknownKey},
		{"kid with a NUL byte", bearer(e.token(map[string]any{"kid": e.kid + "\x00"}, nil)), nil, ReasonUnknownKey},
		{"non-UTF-8 bytes in the raw authorization header", nil, []*corev3.HeaderValue{{Key: "authorization", RawValue: []byte("Bearer \xff\xfe.\xc0\xaf.\x80")}}, ReasonMalformed},
		{"non-UTF-8 bytes in the JWT header", bearer(signRaw(e.priv, []byte(`{"alg":"EdDSA","kid":"`+e.kid+"\xff\xfe"+`"}`), mustJSON(e.claims()))), nil, ReasonUnknownKey},
		{"non-UTF-8 bytes in the alg", bearer(signRaw(e.priv, []byte(`{"alg":"EdDSA\xff","kid":"`+e.kid+`"}`), mustJSON(e.claims()))), nil, ReasonMalformed},
		{"non-UTF-8 payload, not JSON", bearer(signRaw(e.priv, []byte(`{"alg":"EdDSA","kid":"`+e.kid+`"}`), []byte("\xff\xfe\xfd"))), nil, ReasonMalformed},
		{"header that is not JSON", bearer(signRaw(e.priv, []byte("\xff not json"), mustJSON(e.claims()))), nil, ReasonMalformed},
		{"alg as an object", bearer(e.token(map[string]any{"alg": map[string]any{"x": 1}}, nil)), nil, ReasonBadAlgorithm},
		// 1e300 seconds overflows time.Time: the token reads as expired, failing closed.
		{"exp in the far future as a float", bearer(e.token(nil, map[string]any{"exp": 1e300})), nil, ReasonExpired},
		{"exp in the year 9999", bearer(e.token(nil, map[string]any{"exp": 253402300799})), nil, ReasonOK},
		{"exp as a string", bearer(e.token(nil, map[string]any{"exp": "tomorrow"})), nil, ReasonMalformed},
		{"exp far in the past", bearer(e.token(nil, map[string]any{"exp": 1})), nil, ReasonExpired},
		{"exp negative", bearer(e.token(nil, map[string]any{"exp": -1 << 62})), nil, ReasonExpired},
	}
	// Non-UTF-8 inside a claim of a validly signed token is refused as malformed: an
	// allowed token's sub goes upstream in a header, which must be UTF-8.
	badSub := strings.Replace(string(mustJSON(e.claims())), `"sub":"alice"`, `"sub":"al\xffice"`, 1)
	cases = append(cases, tcase{"non-UTF-8 bytes in sub, validly signed", bearer(signRaw(e.priv, []byte(`{"alg":"EdDSA","kid":"`+e.kid+`"}`), []byte(badSub))), nil, ReasonMalformed})

	run := func(t *testing.T, c tcase) {
		req := envoyreq.Check(envoyreq.Request{Headers: c.headers})
		if c.raw != nil {
			req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: c.raw}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := e.client.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		got := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
		if got != c.want.String() {
			t.Fatalf("reason %q, want %q", got, c.want)
		}
		if c.want == ReasonOK {
			for _, h := range resp.GetOkResponse().GetHeaders() {
				if !utf8.ValidString(h.GetHeader().GetValue()) {
					t.Errorf("upstream header %s is not UTF-8", h.GetHeader().GetKey())
				}
			}
			return
		}
		if code := resp.GetDeniedResponse().GetStatus().GetCode(); code != 401 {
			t.Fatalf("HTTP status %d, want 401", code)
		}
		if body := resp.GetDeniedResponse().GetBody(); len(body) > 200 {
			t.Errorf("denial body of %d bytes: it must not echo the input", len(body))
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { run(t, c) })
	}
	if n := e.fetches.Load(); n != 0 {
		t.Errorf("%d requests went where a token's header pointed", n)
	}
	// Every answer is counted under its reason.
	want := map[Reason]int{}
	for _, c := range cases {
		want[c.want]++
	}
	for r, n := range want {
		decision := "deny"
		if r == ReasonOK {
			decision = "allow"
		}
		if got := checksTotal(t, e.reg, decision, r.String()); int(got) != n {
			t.Errorf("revoked_checks_total{decision=%q,reason=%q} = %v, want %d", decision, r, got, n)
		}
	}
	// Bounded memory: ten more rounds of the whole table leave the heap where it was.
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	h0 := heap()
	for range 10 {
		for _, c := range cases {
			run(t, c)
		}
	}
	if h1 := heap(); h1 > h0+32<<20 {
		t.Errorf("heap grew from %d MiB to %d MiB over 10 rounds of hostile input", h0>>20, h1>>20)
	}
}

// A CheckRequest larger than the server's 4 MiB limit is refused by gRPC itself (Envoy,
// failing closed, denies the request), and the server goes on answering.
func TestHostileOversizedCheckRequest(t *testing.T) {
	e := newHostileEnv(t)
	req := envoyreq.Check(envoyreq.Request{Headers: map[string]string{"x-big": strings.Repeat("b", 5<<20)}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.client.Check(ctx, req); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("5 MB request: %v, want ResourceExhausted", err)
	}
	resp, err := e.client.Check(ctx, envoyreq.Check(envoyreq.Bearer(e.token(nil, nil))))
	if err != nil || resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue() != "ok" {
		t.Fatalf("after the oversized request: %v %v", resp, err)
	}
}

// Tokens are never fetched from, nor logged: with debug logging on, the hostile table's
// tokens do not reach the log.
func TestHostileNothingLogged(t *testing.T) {
	e := newHostileEnv(t)
	var buf strings.Builder
	e.a.log = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	toks := []string{
		e.token(nil, nil),
		e.token(map[string]any{"kid": "../../etc/passwd"}, nil),
		e.token(nil, map[string]any{"exp": 1}),
		e.token(map[string]any{"crit": []string{"x"}}, nil),
	}
	for _, tok := range toks {
		e.a.Check("Bearer " + tok)
		e.a.Check("Bearer " + tok + "x")
	}
	log := buf.String()
	if !strings.Contains(log, "check denied") {
		t.Fatalf("no debug log written: %q", log)
	}
	for _, tok := range toks {
		parts := strings.Split(tok, ".")
		for _, p := range parts[1:] {
			if strings.Contains(log, p) {
				t.Fatalf("a token segment reached the log: %s", log)
			}
		}
	}
}

// checksTotal reads revoked_checks_total{decision, reason} from reg.
func checksTotal(t *testing.T, reg *prometheus.Registry, decision, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "revoked_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["decision"] == decision && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzGRPCCheck fuzzes the mapping of an Envoy CheckRequest to a decision, over real
// gRPC through the production server options (the partial decoder): the headers map,
// and the raw header_map Envoy sends with encode_raw_headers, several entries of it
// (rawKeys and rawValues, one entry per line; odd entries carry their value as a
// string, even ones as raw bytes). Whatever arrives, the answer is a well-formed
// response, and only a request carrying exactly one authorization header, "Bearer
// <the valid token>", in either form, is allowed.
func FuzzGRPCCheck(f *testing.F) {
	e := newHostileEnvTB(f)
	valid := e.token(nil, nil)
	f.Add("authorization", "Bearer "+valid, "", []byte(nil))
	f.Add("Authorization", "Bearer "+valid, "authorization", []byte("Bearer "+valid))
	f.Add("x-other", "v", "authorization", []byte("Bearer "+valid))
	f.Add("authorization", "bearer  "+valid+" ", "authorization", []byte("\xff\xfe"))
	f.Add("authorization", "", "authorization", []byte("Bearer a.b.c"))
	// Several header_map entries (issue 9: ["", "Bearer X"] was allowed).
	f.Add("x-other", "v", "authorization\nauthorization", []byte("\nBearer "+valid))
	f.Add("x-other", "v", "authorization\nauthorization", []byte("Bearer "+valid+"\n"))
	f.Add("x-other", "v", ":path\nauthorization\nx-a", []byte("/\nBearer "+valid+"\nb"))
	f.Add("x-other", "v", ":path\nauthorization\nauthorization", []byte("/\nBearer "+valid+"\nBearer "+valid))
	f.Add("authorization", "Bearer "+valid, "x-a\nauthorization", []byte("b\n"))
	f.Add("x-other", "v", "authorization\nx-a\nx-b\nx-c\nauthorization", []byte("\n\n\n\nBearer "+valid))
	f.Fuzz(func(t *testing.T, key, value, rawKeys string, rawValues []byte) {
		if !utf8.ValidString(key) || !utf8.ValidString(value) || !utf8.ValidString(rawKeys) {
			return // proto strings: gRPC refuses them before the server sees them
		}
		req := envoyreq.Check(envoyreq.Request{})
		h := req.Attributes.Request.Http
		h.Headers[key] = value
		var auths []string // every authorization header sent, in either form
		if v, ok := h.Headers["authorization"]; ok {
			auths = append(auths, v)
		}
		if rawKeys != "" {
			h.HeaderMap = &corev3.HeaderMap{}
			values := bytes.Split(rawValues, []byte("\n"))
			for i, k := range strings.Split(rawKeys, "\n") {
				var v []byte
				if i < len(values) {
					v = values[i]
				}
				hv := &corev3.HeaderValue{Key: k, RawValue: v}
				if i%2 == 1 && utf8.Valid(v) {
					hv = &corev3.HeaderValue{Key: k, Value: string(v)}
				}
				h.HeaderMap.Headers = append(h.HeaderMap.Headers, hv)
				if k == "authorization" {
					auths = append(auths, string(v))
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := e.client.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if _, err := proto.Marshal(resp); err != nil {
			t.Fatalf("response does not marshal: %v", err)
		}
		if resp.GetOkResponse() == nil {
			return
		}
		if len(auths) != 1 {
			t.Fatalf("allowed a request with %d authorization headers %.20q", len(auths), auths)
		}
		if tok, _ := BearerToken(auths[0]); tok != valid {
			t.Fatalf("allowed authorization %.40q", auths[0])
		}
	})
}
