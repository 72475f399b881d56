package authz

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/jwtkeys"
)

// check sends req over the real gRPC connection and returns the response.
func (e *testEnv) check(t *testing.T, req envoyreq.Request) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.client.Check(ctx, envoyreq.Check(req))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func deniedHeader(resp *authv3.CheckResponse, key string) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == key {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func noneToken(claims jwt.MapClaims) string {
	enc := base64.RawURLEncoding.EncodeToString
	h := enc([]byte(`{"alg":"none","typ":"JWT"}`))
	p, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SigningString()
	return h + "." + strings.Split(p, ".")[1] + "."
}

func validClaims(e *testEnv) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": testIss, "aud": testAud, "sub": "alice", "jti": devissuer.RandomID(), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// The hostile and broken tokens of issue 2: each gets the contract's 401, nothing panics.
func TestHostileTokens(t *testing.T) {
	e := newTestEnv(t)
	other, _ := devissuer.New("EdDSA", testIss, testAud)
	other.KID = "nope"
	rsaPEM := func() []byte {
		der, _ := x509.MarshalPKIXPublicKey(e.rsa.PublicKey())
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	hs256WithRSAKey := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims(e))
		tok.Header["kid"] = e.rsa.KID
		s, _ := tok.SignedString(rsaPEM)
		return s
	}()
	garbage := strings.Repeat("A", 64<<10)
	now := time.Now()
	const noCreds = `Bearer realm="revoked"`
	invalid := func(desc string) string {
		return `Bearer error="invalid_token", error_description="` + desc + `"`
	}
	cases := []struct {
		name    string
		headers map[string]string
		reason  Reason
		www     string
	}{
		{"no token", nil, ReasonMissingToken, noCreds},
		{"empty header", map[string]string{"authorization": ""}, ReasonMissingToken, noCreds},
		{"two tokens", map[string]string{"authorization": "Bearer " + e.ed.Token("a", time.Hour, nil) + ",Bearer " + e.ed.Token("b", time.Hour, nil)}, ReasonMalformed, invalid("malformed token")},
		{"wrong scheme", map[string]string{"authorization": "Basic YWxpY2U6c2VjcmV0"}, ReasonWrongScheme, noCreds},
		{"scheme only", map[string]string{"authorization": "Bearer"}, ReasonWrongScheme, noCreds},
		{"alg none", map[string]string{"authorization": "Bearer " + noneToken(validClaims(e))}, ReasonBadAlgorithm, invalid("signing algorithm not accepted")},
		{"HS256 signed with the RSA public key", map[string]string{"authorization": "Bearer " + hs256WithRSAKey}, ReasonBadAlgorithm, invalid("signing algorithm not accepted")},
		{"unknown kid", map[string]string{"authorization": "Bearer " + other.Token("alice", time.Hour, nil)}, ReasonUnknownKey, invalid("unknown signing key")},
		{"bad signature", map[string]string{"authorization": "Bearer " + tamper(e.ed.Token("alice", time.Hour, nil))}, ReasonBadSignature, invalid("invalid signature")},
		{"expired", map[string]string{"authorization": "Bearer " + e.ed.Token("alice", -time.Minute, nil)}, ReasonExpired, invalid("token expired")},
		{"not yet valid", map[string]string{"authorization": "Bearer " + e.ed.Token("alice", time.Hour, jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()})}, ReasonNotYetValid, invalid("token not yet valid")},
		{"issued in the future", map[string]string{"authorization": "Bearer " + e.ed.Token("alice", time.Hour, jwt.MapClaims{"iat": now.Add(time.Minute).Unix()})}, ReasonNotYetValid, invalid("token not yet valid")},
		{"wrong iss", map[string]string{"authorization": "Bearer " + e.ed.Token("alice", time.Hour, jwt.MapClaims{"iss": "https://evil.example.com"})}, ReasonWrongIssuer, invalid("issuer not accepted")},
		{"wrong aud", map[string]string{"authorization": "Bearer " + e.ed.Token("alice", time.Hour, jwt.MapClaims{"aud": []string{"other"}})}, ReasonWrongAudience, invalid("audience not accepted")},
		{"no aud", map[string]string{"authorization": "Bearer " + e.ed.Token("alice", time.Hour, jwt.MapClaims{"aud": nil})}, ReasonWrongAudience, invalid("audience not accepted")},
		{"missing jti", map[string]string{"authorization": "Bearer " + e.ed.Token("alice", time.Hour, jwt.MapClaims{"jti": nil})}, ReasonMissingClaim, invalid("required claim missing")},
		{"missing exp", map[string]string{"authorization": "Bearer " + e.ed.Token("alice", time.Hour, jwt.MapClaims{"exp": nil})}, ReasonMissingClaim, invalid("required claim missing")},
		{"garbage", map[string]string{"authorization": "Bearer not-a-jwt"}, ReasonMalformed, invalid("malformed token")},
		{"garbage with dots", map[string]string{"authorization": "Bearer a.b.c"}, ReasonMalformed, invalid("malformed token")},
		{"64 KiB of garbage", map[string]string{"authorization": "Bearer " + garbage}, ReasonMalformed, invalid("malformed token")},
		{"header not a string claim", map[string]string{"authorization": "Bearer " + e.ed.Token("alice", time.Hour, jwt.MapClaims{"sub": 42})}, ReasonMalformed, invalid("malformed token")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := e.check(t, envoyreq.Request{Headers: c.headers})
			if got := code.Code(resp.GetStatus().GetCode()); got != code.Code_UNAUTHENTICATED {
				t.Fatalf("status %v, want UNAUTHENTICATED", got)
			}
			if got := resp.GetStatus().GetMessage(); got != c.reason.String() {
				t.Errorf("reason %q, want %q", got, c.reason)
			}
			if got := resp.GetDeniedResponse().GetStatus().GetCode(); int(got) != 401 {
				t.Errorf("HTTP status %d, want 401", got)
			}
			if got := deniedHeader(resp, "www-authenticate"); got != c.www {
				t.Errorf("www-authenticate %q, want %q", got, c.www)
			}
			body := resp.GetDeniedResponse().GetBody()
			for _, v := range c.headers {
				if len(v) > 20 && strings.Contains(body, v[7:]) {
					t.Error("denial body echoes the token")
				}
			}
			if got := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue(); got != c.reason.String() {
				t.Errorf("metadata reason %q", got)
			}
		})
	}
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	sig := []byte(parts[2])
	if sig[3] == 'A' {
		sig[3] = 'B'
	} else {
		sig[3] = 'A'
	}
	return parts[0] + "." + parts[1] + "." + string(sig)
}

func TestAllowSendsSubjectAndMetadata(t *testing.T) {
	e := newTestEnv(t)
	for _, iss := range []*devissuer.Issuer{e.ed, e.rsa} {
		tok := iss.Token("alice", time.Hour, nil)
		// Mixed-case scheme, and a client trying to smuggle its own subject header.
		resp := e.check(t, envoyreq.Request{Headers: map[string]string{"authorization": "bEaReR " + tok, "x-revoked-sub": "admin"}})
		if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
			t.Fatalf("%s: denied: %v", iss.Alg(), resp.GetStatus())
		}
		hs := resp.GetOkResponse().GetHeaders()
		if len(hs) != 1 || hs[0].GetHeader().GetKey() != "x-revoked-sub" || hs[0].GetHeader().GetValue() != "alice" ||
			hs[0].GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Fatalf("upstream headers %v", hs)
		}
		md := resp.GetDynamicMetadata().GetFields()
		if md["decision"].GetStringValue() != "allow" || len(md["jti_hash"].GetStringValue()) != 12 {
			t.Fatalf("metadata %v", md)
		}
	}
}

func TestRevocationFlipsCachedToken(t *testing.T) {
	e := newTestEnv(t)
	jti := devissuer.RandomID()
	tok := e.ed.Token("alice", time.Hour, jwt.MapClaims{"jti": jti, "sid": "s-1", "client_id": "web"})
	other := e.ed.Token("bob", time.Hour, nil)
	for i := 0; i < 2; i++ { // the second check is served from the token cache
		if resp := e.check(t, envoyreq.Bearer(tok)); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
			t.Fatalf("valid token denied: %v", resp.GetStatus())
		}
	}
	e.set.AddJTI(e.set.JTIKey(testIss, jti), time.Now().Add(time.Hour).Unix())
	resp := e.check(t, envoyreq.Bearer(tok))
	if resp.GetStatus().GetMessage() != "revoked_jti" || deniedHeader(resp, "www-authenticate") != `Bearer error="invalid_token", error_description="token revoked"` {
		t.Fatalf("revoked token: %v %v", resp.GetStatus(), deniedHeader(resp, "www-authenticate"))
	}
	if resp := e.check(t, envoyreq.Bearer(other)); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatal("revoking one token denied another")
	}
	// A cutoff on bob's sub, from a later time than his token's iat.
	e.set.AddCutoff(e.set.CutoffKey("", "sub", "bob"), time.Now().Add(time.Second).Unix())
	if resp := e.check(t, envoyreq.Bearer(other)); resp.GetStatus().GetMessage() != "revoked_cutoff" {
		t.Fatalf("cutoff not applied: %v", resp.GetStatus())
	}
	// A token issued after the cutoff passes.
	later := e.ed.Token("bob", time.Hour, jwt.MapClaims{"iat": time.Now().Add(3 * time.Second).Unix()})
	if resp := e.check(t, envoyreq.Bearer(later)); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("token issued after the cutoff denied: %v", resp.GetStatus())
	}
}

func TestCutoffOnAzpAndSid(t *testing.T) {
	e := newTestEnv(t)
	azp := e.ed.Token("carol", time.Hour, jwt.MapClaims{"azp": "mobile"})
	sid := e.ed.Token("dave", time.Hour, jwt.MapClaims{"sid": "sess-9"})
	e.set.AddCutoff(e.set.CutoffKey(testIss, "client_id", "mobile"), time.Now().Add(time.Second).Unix())
	e.set.AddCutoff(e.set.CutoffKey(testIss, "sid", "sess-9"), time.Now().Add(time.Second).Unix())
	for name, tok := range map[string]string{"azp": azp, "sid": sid} {
		if resp := e.check(t, envoyreq.Bearer(tok)); resp.GetStatus().GetMessage() != "revoked_cutoff" {
			t.Errorf("%s cutoff: %v", name, resp.GetStatus())
		}
	}
}

func TestGateFailsClosed(t *testing.T) {
	e := newTestEnv(t)
	tok := e.ed.Token("alice", time.Hour, nil)
	for _, gate := range []Reason{ReasonNotReady, ReasonStale} {
		e.a.SetGate(gate)
		resp := e.check(t, envoyreq.Bearer(tok))
		if code.Code(resp.GetStatus().GetCode()) != code.Code_UNAVAILABLE || resp.GetDeniedResponse().GetStatus().GetCode() != 503 {
			t.Fatalf("gate %v: %v", gate, resp.GetStatus())
		}
		if deniedHeader(resp, "retry-after") == "" {
			t.Error("503 without retry-after")
		}
	}
	e.a.SetGate(ReasonOK)
	if resp := e.check(t, envoyreq.Bearer(tok)); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatal("open gate still denies")
	}
}

// Envoy sends raw header bytes in header_map when encode_raw_headers is set.
func TestHeaderMap(t *testing.T) {
	e := newTestEnv(t)
	tok := e.ed.Token("alice", time.Hour, nil)
	req := envoyreq.Check(envoyreq.Request{})
	h := req.Attributes.Request.Http
	h.Headers = nil
	h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":path", RawValue: []byte("/")}, {Key: "authorization", RawValue: []byte("Bearer " + tok)}}}
	resp, err := e.client.Check(context.Background(), req)
	if err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("header_map token: %v %v", err, resp.GetStatus())
	}
	h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: "authorization", RawValue: []byte("Bearer " + tok)})
	if resp, _ := e.client.Check(context.Background(), req); resp.GetStatus().GetMessage() != "malformed" {
		t.Fatalf("two authorization headers: %v", resp.GetStatus())
	}
}

// Two authorization headers are refused as malformed whatever they hold, in every
// form a check arrives in: an empty one beside a token was allowed in header_map
// (issue 9) while the map and HTTP forms denied two headers.
func TestRepeatedAuthorizationHeaders(t *testing.T) {
	e := newTestEnv(t)
	tok := "Bearer " + e.ed.Token("alice", time.Hour, nil)
	raw := func(v string) *corev3.HeaderValue {
		return &corev3.HeaderValue{Key: "authorization", RawValue: []byte(v)}
	}
	str := func(v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: "authorization", Value: v} }
	cases := []struct {
		name      string
		headerMap []*corev3.HeaderValue
		mapValue  string // the map's authorization entry, when not empty
	}{
		{"header_map: empty raw value, then the token", []*corev3.HeaderValue{raw(""), raw(tok)}, ""},
		{"header_map: the token, then an empty raw value", []*corev3.HeaderValue{raw(tok), raw("")}, ""},
		{"header_map: empty string value, then the token", []*corev3.HeaderValue{str(""), str(tok)}, ""},
		{"header_map: the token twice", []*corev3.HeaderValue{raw(tok), str(tok)}, ""},
		{"map and header_map", []*corev3.HeaderValue{raw(tok)}, tok},
	}
	for _, c := range cases {
		req := envoyreq.Check(envoyreq.Request{})
		h := req.Attributes.Request.Http
		if c.mapValue != "" {
			h.Headers["authorization"] = c.mapValue
		}
		h.HeaderMap = &corev3.HeaderMap{Headers: append([]*corev3.HeaderValue{{Key: ":path", RawValue: []byte("/")}}, c.headerMap...)}
		resp, err := e.client.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetStatus().GetMessage(); got != "malformed" {
			t.Errorf("%s: %q, want malformed", c.name, got)
		}
	}
	srv := httptest.NewServer(NewHTTPServer(e.a, "x-revoked-sub"))
	t.Cleanup(srv.Close)
	for _, auth := range [][]string{{"", tok}, {tok, ""}, {tok, tok}} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header["Authorization"] = auth
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Www-Authenticate"), "malformed token") {
			t.Errorf("HTTP with authorization %.20q: %d %q, want 401 malformed", auth, resp.StatusCode, resp.Header.Get("Www-Authenticate"))
		}
	}
}

func TestHMACWhenConfigured(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	e := newTestEnv(t, func(_ *VerifierConfig, k *jwtkeys.Config) { k.HMACSecret = secret })
	good := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims(e))
	tok, _ := good.SignedString(secret)
	if resp := e.check(t, envoyreq.Bearer(tok)); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("HS256 with the configured secret denied: %v", resp.GetStatus())
	}
	// Algorithm confusion with HMAC enabled: the RSA public key is not the secret.
	der, _ := x509.MarshalPKIXPublicKey(e.rsa.PublicKey())
	confused := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims(e))
	confused.Header["kid"] = e.rsa.KID
	tok, _ = confused.SignedString(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if resp := e.check(t, envoyreq.Bearer(tok)); resp.GetStatus().GetMessage() != "bad_signature" {
		t.Fatalf("HS256 signed with the RSA key: %v", resp.GetStatus())
	}
}

// A cache hit stands for the whole token: the cache's key is the token's SHA-256 (it
// was two 64-bit non-cryptographic hashes once, which can be made to collide), so a
// token one byte away from a cached one is verified on its own.
func TestTokenCacheKeyIsTheTokensDigest(t *testing.T) {
	e := newTestEnv(t)
	tok := e.ed.Token("alice", time.Minute, nil)
	header := "Bearer " + tok
	if d := e.a.Decide(header, time.Now()); !d.Allowed() {
		t.Fatalf("fresh token: %v", d.Reason)
	}
	keys := e.a.cache.Keys()
	if want := tokenDigest(sha256.Sum256([]byte(tok))); len(keys) != 1 || keys[0] != want {
		t.Fatalf("cache keys %x, want the token's SHA-256 %x", keys, want)
	}
	if d := e.a.Decide("Bearer "+tamper(tok), time.Now()); d.Reason != ReasonBadSignature {
		t.Fatalf("a token one byte away from a cached one: %v", d.Reason)
	}
}

func TestCacheEntryNeverOutlivesExp(t *testing.T) {
	e := newTestEnv(t)
	tok := e.ed.Token("alice", time.Minute, nil)
	now := time.Now()
	if d := e.a.Decide("Bearer "+tok, now); !d.Allowed() {
		t.Fatalf("fresh token: %v", d.Reason)
	}
	if d := e.a.Decide("Bearer "+tok, now.Add(2*time.Minute)); d.Reason != ReasonExpired {
		t.Fatalf("cached token past exp: %v", d.Reason)
	}
}

// A token that would outlive the stream's memory of its revocation is refused, judged
// by its lifetime exp - iat at every clock position (issue 9 row 3: a 30 h token was
// refused only while more than 24 h remained, so it passed once its cutoff was purged).
func TestTooLongLived(t *testing.T) {
	e := newTestEnv(t, func(v *VerifierConfig, _ *jwtkeys.Config) { v.MaxLifetime = 24 * time.Hour })
	now := time.Now()
	at := func(iat, exp time.Time) string {
		return e.ed.Token("alice", 0, jwt.MapClaims{"iat": iat.Unix(), "exp": exp.Unix()})
	}
	const wantWWW = `Bearer error="invalid_token", error_description="token lifetime exceeds the revocation window, or no iat to bound it"`

	// Within the window: allowed now and late in its life (served from the cache then).
	for _, tok := range []string{at(now, now.Add(23*time.Hour)), at(now, now.Add(24*time.Hour))} {
		if resp := e.check(t, envoyreq.Bearer(tok)); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
			t.Fatalf("a token of at most 24 h: %v", resp.GetStatus())
		}
		if d := e.a.Decide("Bearer "+tok, now.Add(22*time.Hour)); !d.Allowed() {
			t.Fatalf("a token of at most 24 h, 22 h later: %v", d.Reason)
		}
	}
	// 30 h, issued 6 h ago: 24 h left, which exp - now let through.
	resp := e.check(t, envoyreq.Bearer(at(now.Add(-6*time.Hour), now.Add(24*time.Hour))))
	if resp.GetStatus().GetMessage() != "too_long_lived" || deniedHeader(resp, "www-authenticate") != wantWWW {
		t.Errorf("a 30 h token with 24 h left: %v %q", resp.GetStatus(), deniedHeader(resp, "www-authenticate"))
	}
	// 30 h, issued now, revoked by a cutoff: refused at every point of its life, the
	// +25 h where the cutoff is purged from the stream included.
	long := at(now, now.Add(30*time.Hour))
	e.set.AddCutoff(e.set.CutoffKey("", "sub", "alice"), now.Add(time.Second).Unix())
	for _, after := range []time.Duration{0, 7 * time.Hour, 24 * time.Hour, 25 * time.Hour, 29 * time.Hour} {
		if d := e.a.Decide("Bearer "+long, now.Add(after)); d.Reason != ReasonTooLongLived {
			t.Errorf("a 30 h token at +%v: %v, want too_long_lived", after, d.Reason)
		}
	}
	// A replica where the cutoff is purged, or that started after it aged out.
	purged := newTestEnv(t, func(v *VerifierConfig, _ *jwtkeys.Config) { v.MaxLifetime = 24 * time.Hour })
	long = purged.ed.Token("alice", 0, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(30 * time.Hour).Unix()})
	if d := purged.a.Decide("Bearer "+long, now.Add(25*time.Hour)); d.Reason != ReasonTooLongLived {
		t.Errorf("a 30 h token at +25 h, its cutoff purged: %v, want too_long_lived", d.Reason)
	}
	// Without iat the lifetime cannot be bounded: refused, saying so.
	resp = e.check(t, envoyreq.Bearer(e.ed.Token("bob", time.Hour, jwt.MapClaims{"iat": nil})))
	if resp.GetStatus().GetMessage() != "too_long_lived" || deniedHeader(resp, "www-authenticate") != wantWWW {
		t.Errorf("a token without iat: %v %q", resp.GetStatus(), deniedHeader(resp, "www-authenticate"))
	}
	// Without a bound (MaxLifetime 0) iat stays optional.
	free := newTestEnv(t)
	if d := free.a.Decide("Bearer "+free.ed.Token("alice", time.Hour, jwt.MapClaims{"iat": nil}), time.Now()); !d.Allowed() {
		t.Fatalf("no iat, no lifetime bound: %v", d.Reason)
	}
}

// Single-key issuers often omit kid: the JWKS's public keys are tried, never a symmetric one.
func TestTokenWithoutKID(t *testing.T) {
	e := newTestEnv(t)
	for _, iss := range []*devissuer.Issuer{e.ed, e.rsa} {
		kid := iss.KID
		iss.KID = ""
		tok := iss.Token("alice", time.Hour, nil)
		iss.KID = kid
		if resp := e.check(t, envoyreq.Bearer(tok)); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
			t.Fatalf("%s token without kid: %v", iss.Alg(), resp.GetStatus())
		}
	}
	stranger, _ := devissuer.New("EdDSA", testIss, testAud)
	stranger.KID = ""
	if resp := e.check(t, envoyreq.Bearer(stranger.Token("eve", time.Hour, nil))); resp.GetStatus().GetMessage() != "bad_signature" {
		t.Fatalf("unknown key without kid: %v", resp.GetStatus())
	}
}

// Extra cutoff claims (--cutoff-claim tenant) add to sub, sid, client_id, and match
// numbers and booleans by their JSON text; null, arrays and objects never match.
func TestExtraCutoffClaim(t *testing.T) {
	e := newTestEnv(t, func(v *VerifierConfig, _ *jwtkeys.Config) { v.CutoffClaims = []string{"tenant"} })
	// Every token minted below, however slowly, is issued before it.
	nb := time.Now().Add(time.Hour).Unix()
	for _, v := range []string{"42", "acme", "true", "4.2e1", "[42]", "null"} {
		e.set.AddCutoff(e.set.CutoffKey(testIss, "tenant", v), nb)
	}
	e.set.AddCutoff(e.set.CutoffKey("", "sub", "mallory"), nb)
	cases := []struct {
		name   string
		sub    string
		tenant any
		want   string
	}{
		{"string", "alice", "acme", "revoked_cutoff"},
		{"number", "alice", 42, "revoked_cutoff"},
		{"number as a string", "alice", "42", "revoked_cutoff"},
		{"boolean", "alice", true, "revoked_cutoff"},
		{"number, by its JSON text", "alice", json.RawMessage("4.2e1"), "revoked_cutoff"},
		{"another number", "alice", 43, "ok"},
		{"42.0 is not 42", "alice", json.RawMessage("42.0"), "ok"},
		{"false", "alice", false, "ok"},
		{"array", "alice", []int{42}, "ok"},
		{"object", "alice", map[string]int{"id": 42}, "ok"},
		{"null", "alice", nil, "ok"},
		// The built-ins still apply with --cutoff-claim tenant (issue 9 row 6).
		{"sub cutoff beside tenant", "mallory", "other", "revoked_cutoff"},
	}
	for _, c := range cases {
		claims := jwt.MapClaims{"tenant": c.tenant}
		if c.tenant == nil {
			claims = jwt.MapClaims{"tenant": json.RawMessage("null")}
		}
		resp := e.check(t, envoyreq.Bearer(e.ed.Token(c.sub, time.Hour, claims)))
		got := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
		if got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
