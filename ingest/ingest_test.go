package ingest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestRevocationsPublishesAfterAck(t *testing.T) {
	f := newFixture(t, nil)
	r := f.postJSON(`{"type":"jti","jti":"7f3c","exp":1767225600,"iss":"https://idp.example.com","extra":"ignored"}`, bearer)
	if r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var out struct {
		Results []itemResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 1 || out.Results[0].Sequence != 1 || out.Results[0].Duplicate {
		t.Fatalf("results %+v", out.Results)
	}

	batch := `[
	  {"type":"cutoff","claim":"sub","value":"user-42","not_before":1767222000,"event_id":"e-1"},
	  {"type":"cutoff","claim":"client_id","value":"billing","not_before":1767222000},
	  {"type":"jti","jti":"a2","exp":1767225600,"reason":"compromised"}
	]`
	for round, wantDup := range []bool{false, true} {
		r = f.postJSON(batch, map[string]string{"authorization": "bearer " + testBearer})
		if r.code != http.StatusOK {
			t.Fatalf("round %d: %d %s", round, r.code, r.body)
		}
		out.Results = nil
		_ = json.Unmarshal([]byte(r.body), &out)
		if len(out.Results) != 3 {
			t.Fatalf("round %d: %s", round, r.body)
		}
		for i, res := range out.Results {
			if res.Index != i || res.Sequence != uint64(i+2) || res.Duplicate != wantDup || res.Error != "" {
				t.Errorf("round %d result %d: %+v", round, i, res)
			}
		}
		if out.Results[0].MsgID != "e-1" {
			t.Errorf("event_id not used as Nats-Msg-Id: %+v", out.Results[0])
		}
	}
	evs := f.events()
	if len(evs) != 4 || evs[1].Value != "user-42" || evs[3].JTI != "a2" {
		t.Fatalf("stream %+v", evs)
	}
	if got := f.metric("revoked_ingest_events_published_total", map[string]string{"endpoint": "revocations"}); got != 4 {
		t.Errorf("published metric %v", got)
	}
	if got := f.metric("revoked_ingest_events_duplicate_total", map[string]string{"endpoint": "revocations"}); got != 3 {
		t.Errorf("duplicate metric %v", got)
	}
	if got := f.metric("revoked_ingest_requests_total", map[string]string{"endpoint": "revocations", "code": "200"}); got != 3 {
		t.Errorf("requests metric %v", got)
	}
}

func TestRevocationsRefusesUnauthenticated(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"type":"jti","jti":"x","exp":1767225600}`
	tests := map[string]struct {
		header    map[string]string
		challenge string
	}{
		"no credentials": {nil, `Bearer realm="revoked-ingest"`},
		"wrong token":    {map[string]string{"Authorization": "Bearer nope"}, `Bearer realm="revoked-ingest", error="invalid_token", error_description="bad credentials"`},
		"basic scheme":   {map[string]string{"Authorization": "Basic " + testBearer}, `Bearer realm="revoked-ingest", error="invalid_token", error_description="bad credentials"`},
		"token prefix":   {map[string]string{"Authorization": "Bearer " + testBearer[:10]}, `Bearer realm="revoked-ingest", error="invalid_token", error_description="bad credentials"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := f.postJSON(body, tc.header)
			if r.code != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != tc.challenge {
				t.Fatalf("%d %q %s", r.code, r.header.Get("WWW-Authenticate"), r.body)
			}
		})
	}
	if n := len(f.events()); n != 0 {
		t.Fatalf("%d events published by unauthenticated callers", n)
	}
}

func TestRevocationsBadInput(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBody = 64 << 10 })
	tests := map[string]struct {
		method, ctype, body string
		code                int
		errCode             string
		contains            string
	}{
		"malformed JSON":       {"POST", "application/json", `{"type":"jti",`, 400, "malformed", "malformed JSON"},
		"malformed array":      {"POST", "application/json", `[{"type":"jti"},`, 400, "malformed", "malformed JSON array"},
		"not an object":        {"POST", "application/json", `"jti"`, 400, "malformed", "JSON event object"},
		"empty body":           {"POST", "application/json", ``, 400, "malformed", "empty body"},
		"empty array":          {"POST", "application/json", `[]`, 400, "malformed", "no events"},
		"unknown type":         {"POST", "application/json", `{"type":"session","value":"x"}`, 400, "invalid_event", `"reason":"unknown_type"`},
		"one bad in array":     {"POST", "application/json", `[{"type":"jti","jti":"ok","exp":1767225600},{"type":"jti","jti":"no-exp"}]`, 400, "invalid_event", `"index":1,"reason":"invalid"`},
		"claim not allowed":    {"POST", "application/json", `{"type":"cutoff","claim":"email","value":"a@b","not_before":1}`, 400, "invalid_event", "not allowed"},
		"event over 4 KiB":     {"POST", "application/json", `{"type":"jti","jti":"x","exp":1767225600,"sub":"` + strings.Repeat("s", 5000) + `"}`, 400, "invalid_event", "too_large"},
		"event_id with CRLF":   {"POST", "application/json", `{"type":"jti","jti":"x","exp":1767225600,"event_id":"a\r\nb"}`, 400, "invalid_event", "control character"},
		"oversized body":       {"POST", "application/json", `[` + strings.Repeat(`{"type":"jti","jti":"x","exp":1767225600},`, 2000) + `{}]`, 413, "too_large", "larger than 65536"},
		"wrong content type":   {"POST", "text/plain", `{"type":"jti","jti":"x","exp":1767225600}`, 415, "invalid_request", "application/json"},
		"GET":                  {"GET", "", ``, 405, "invalid_request", "POST"},
		"unknown path":         {"POST", "application/json", `{}`, 404, "not_found", ""},
		"not UTF-8 inside":     {"POST", "application/json", "{\"type\":\"jti\",\"jti\":\"\xff\",\"exp\":1767225600}", 400, "invalid_event", "reason"},
		"trailing garbage obj": {"POST", "application/json", `{"type":"jti","jti":"x","exp":1767225600} {}`, 400, "malformed", "malformed JSON"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := "/v1/revocations"
			if name == "unknown path" {
				path = "/v1/revocation"
			}
			r := f.do(tc.method, path, tc.ctype, strings.NewReader(tc.body), bearer)
			if r.code != tc.code {
				t.Fatalf("code %d, want %d: %s", r.code, tc.code, r.body)
			}
			if got := r.json(t)["error"]; got != tc.errCode {
				t.Errorf("error %v, want %s: %s", got, tc.errCode, r.body)
			}
			if !strings.Contains(r.body, tc.contains) {
				t.Errorf("body lacks %q: %s", tc.contains, r.body)
			}
		})
	}
	if n := len(f.events()); n != 0 {
		t.Fatalf("%d events published from bad input", n)
	}
	if got := f.metric("revoked_ingest_events_rejected_total", map[string]string{"endpoint": "revocations", "reason": "unknown_type"}); got != 1 {
		t.Errorf("rejected{unknown_type} = %v", got)
	}
}

func TestRevocationsNATSOutageAnswers503(t *testing.T) {
	f := newFixture(t, nil)
	f.nats.Stop()
	start := time.Now()
	r := f.postJSON(`{"type":"jti","jti":"during-outage","exp":1767225600}`, bearer)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.json(t)["error"] != "temporarily_unavailable" {
		t.Fatalf("%d %v %s", r.code, r.header, r.body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("answered after %v", d)
	}
	r = f.postJSON(`[{"type":"jti","jti":"o1","exp":1767225600},{"type":"jti","jti":"o2","exp":1767225600}]`, bearer)
	if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "not published") {
		t.Fatalf("array: %d %s", r.code, r.body)
	}
	if got := f.metric("revoked_ingest_publish_errors_total", map[string]string{"endpoint": "revocations"}); got != 2 {
		t.Errorf("publish errors %v", got)
	}
	res, err := http.Get(f.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz %d during the outage", res.StatusCode)
	}
	f.nats.Restart()
	waitFor(t, 15*time.Second, func() bool {
		res, err := http.Get(f.admin + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	r = f.postJSON(`{"type":"jti","jti":"after-outage","exp":1767225600}`, bearer)
	if r.code != http.StatusOK {
		t.Fatalf("after restart: %d %s", r.code, r.body)
	}
	// Whatever was answered 503 may or may not be in the stream, but nothing is doubled
	// and what was answered 200 is there.
	seen := map[string]int{}
	for _, ev := range f.events() {
		seen[ev.JTI]++
	}
	for jti, n := range seen {
		if n != 1 {
			t.Errorf("jti %s stored %d times", jti, n)
		}
	}
	if seen["after-outage"] != 1 {
		t.Errorf("stream %v", seen)
	}
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	f := newFixture(t, func(c *Config) {
		c.TLSCert, c.TLSKey, c.ClientCA = p.certFile, p.keyFile, p.caFile
		c.BearerTokenFile = ""
	})
	withCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: p.pool, Certificates: []tls.Certificate{p.clientCert(t)},
	}}}
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
	other := newPKI(t)
	foreignCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: p.pool, Certificates: []tls.Certificate{other.clientCert(t)},
	}}}

	f.client = withCert
	if r := f.postJSON(`{"type":"jti","jti":"mtls","exp":1767225600}`, nil); r.code != http.StatusOK {
		t.Fatalf("with a client certificate: %d %s", r.code, r.body)
	}
	f.client = noCert
	if r := f.postJSON(`{"type":"jti","jti":"nocert","exp":1767225600}`, nil); r.code != http.StatusUnauthorized {
		t.Fatalf("without a client certificate: %d %s", r.code, r.body)
	}
	if r := f.postJSON(`{"type":"jti","jti":"nocert","exp":1767225600}`, bearer); r.code != http.StatusUnauthorized {
		t.Fatalf("bearer without --bearer-token-file: %d %s", r.code, r.body)
	}
	req, _ := http.NewRequest("POST", f.base+"/v1/revocations", strings.NewReader(`{"type":"jti","jti":"foreign","exp":1767225600}`))
	if res, err := foreignCert.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("a certificate of another CA got %d", res.StatusCode)
	}
	if evs := f.events(); len(evs) != 1 || evs[0].JTI != "mtls" {
		t.Fatalf("stream %+v", evs)
	}
}

func accessClaims(jti string, exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": testIssuer, "sub": "user-42", "aud": testAudience, "client_id": "web",
		"iat": time.Now().Add(-time.Minute).Unix(), "exp": exp.Unix(), "jti": jti,
	}
}

func TestOAuthRevoke(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Audiences = []string{testAudience} })
	stranger := newSigner(t, "k1") // same kid, a key the JWKS does not hold
	exp := time.Now().Add(time.Hour)
	tests := map[string]struct {
		form      url.Values
		header    map[string]string
		code      int
		published string // jti expected in the stream, "" for none
	}{
		"valid token": {url.Values{"token": {f.key.sign(t, accessClaims("at-1", exp), nil)}, "token_type_hint": {"access_token"}}, bearer, 200, "at-1"},
		"wrong hint":  {url.Values{"token": {f.key.sign(t, accessClaims("at-2", exp), nil)}, "token_type_hint": {"refresh_token"}}, bearer, 200, "at-2"},
		"entra uti": {url.Values{"token": {f.key.sign(t, jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "exp": exp.Unix(), "uti": "u-3"}, nil)}},
			bearer, 200, "u-3"},
		"expired":        {url.Values{"token": {f.key.sign(t, accessClaims("at-old", time.Now().Add(-time.Hour)), nil)}}, bearer, 200, ""},
		"wrongly signed": {url.Values{"token": {stranger.sign(t, accessClaims("at-forged", exp), nil)}}, bearer, 200, ""},
		"unknown kid":    {url.Values{"token": {newSigner(t, "k9").sign(t, accessClaims("at-k9", exp), nil)}}, bearer, 200, ""},
		"wrong issuer": {url.Values{"token": {f.key.sign(t, jwt.MapClaims{"iss": "https://evil.example.com", "aud": testAudience, "exp": exp.Unix(), "jti": "at-evil"}, nil)}},
			bearer, 200, ""},
		"wrong audience": {url.Values{"token": {f.key.sign(t, jwt.MapClaims{"iss": testIssuer, "aud": "other", "exp": exp.Unix(), "jti": "at-aud"}, nil)}}, bearer, 200, ""},
		"opaque token":   {url.Values{"token": {"2YotnFZFEjr1zCsicMWpAA"}}, bearer, 200, ""},
		"unsigned alg none": {url.Values{"token": {"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + b64(`{"iss":"`+testIssuer+`","aud":"`+testAudience+`","exp":4102444800,"jti":"at-none"}`) + "."}},
			bearer, 200, ""},
		"no jti":          {url.Values{"token": {f.key.sign(t, jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "exp": exp.Unix()}, nil)}}, bearer, 400, ""},
		"no token":        {url.Values{"token_type_hint": {"access_token"}}, bearer, 400, ""},
		"unauthenticated": {url.Values{"token": {f.key.sign(t, accessClaims("at-unauth", exp), nil)}}, nil, 401, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := len(f.events())
			r := f.postForm("/oauth2/revoke", tc.form, tc.header)
			if r.code != tc.code {
				t.Fatalf("code %d, want %d: %s", r.code, tc.code, r.body)
			}
			evs := f.events()
			if tc.published == "" {
				if len(evs) != before {
					t.Fatalf("published %+v", evs[before:])
				}
				return
			}
			if len(evs) != before+1 {
				t.Fatalf("%d new events", len(evs)-before)
			}
			ev := evs[before]
			if ev.Type != "jti" || ev.JTI != tc.published || ev.Exp != exp.Unix() || ev.Iss != testIssuer || ev.Reason != "logout" || ev.RevokedBy != "oauth2-revoke" {
				t.Errorf("event %+v", ev)
			}
		})
	}
	if got := f.metric("revoked_ingest_tokens_ignored_total", map[string]string{"reason": "expired"}); got != 1 {
		t.Errorf("ignored{expired} = %v", got)
	}
}

func b64(s string) string {
	return strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(stdB64(s)), "=")
}

func TestOAuthRevokeClientSecretBasic(t *testing.T) {
	var secretFile string
	f := newFixture(t, func(c *Config) {
		secretFile = writeSecret(t, t.TempDir(), "web-secret", "web client secret 0123456789")
		c.OAuthClients = []string{"web app:" + secretFile}
	})
	claims := accessClaims("at-basic", time.Now().Add(time.Hour))
	claims["client_id"] = "web app" // its own token: see TestOAuthRevokeOwnTokensOnly
	tok := f.key.sign(t, claims, nil)
	form := url.Values{"token": {tok}}
	basic := func(id, secret string) map[string]string {
		return map[string]string{"Authorization": "Basic " + stdB64(url.QueryEscape(id)+":"+url.QueryEscape(secret))}
	}
	for name, h := range map[string]map[string]string{
		"wrong secret":   basic("web app", "guess"),
		"unknown client": basic("other", "web client secret 0123456789"),
		"bearer instead": bearer,
		"nothing":        nil,
	} {
		r := f.postForm("/oauth2/revoke", form, h)
		if r.code != http.StatusUnauthorized || r.json(t)["error"] != "invalid_client" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: %d %s", name, r.code, r.body)
		}
	}
	if r := f.postForm("/oauth2/revoke", form, basic("web app", "web client secret 0123456789")); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	evs := f.events()
	if len(evs) != 1 || evs[0].JTI != "at-basic" || evs[0].RevokedBy != "oauth2-revoke:web app" {
		t.Fatalf("stream %+v", evs)
	}
}

func TestEndpointsOffWithoutKeys(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.JWKSFile, c.LogoutAudiences = "", nil })
	for _, path := range []string{"/oauth2/revoke", "/backchannel-logout"} {
		r := f.postForm(path, url.Values{"token": {"x"}, "logout_token": {"x"}}, bearer)
		if r.code != http.StatusNotFound || !strings.Contains(r.body, "--jwks") {
			t.Errorf("%s: %d %s", path, r.code, r.body)
		}
	}
}

func TestAdminEndpoints(t *testing.T) {
	f := newFixture(t, nil)
	f.postJSON(`{"type":"jti","jti":"m","exp":1767225600}`, bearer)
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ok",
		"/metrics": `revoked_ingest_requests_total{code="200",endpoint="revocations"} 1`,
	} {
		res, err := http.Get(f.admin + path)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = fmt.Fprint(&b, readAll(res))
		if res.StatusCode != 200 || !strings.Contains(b.String(), want) {
			t.Errorf("%s: %d %q", path, res.StatusCode, b.String())
		}
	}
	if v := f.metric("revoked_ingest_nats_connected", nil); v != 1 {
		t.Errorf("nats_connected %v", v)
	}
	// The admin listener does not serve the API, nor the API the admin endpoints.
	res, err := http.Post(f.admin+"/v1/revocations", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == 200 {
		t.Error("the admin listener accepted an event")
	}
	if r := f.do("GET", "/metrics", "", nil, nil); r.code != http.StatusNotFound {
		t.Errorf("API served /metrics: %d", r.code)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"1048576": 1 << 20, "1MiB": 1 << 20, "512KiB": 512 << 10, "2M": 2 << 20, "64 KB": 64 << 10, "100B": 100} {
		var b ByteSize
		if err := b.Set(in); err != nil || b != want {
			t.Errorf("%q: %d %v", in, b, err)
		}
	}
	for _, bad := range []string{"", "-1", "1GiB", "MiB", "1.5MiB"} {
		var b ByteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("%q accepted as %d", bad, b)
		}
	}
}

// A rotated bearer token file (a Kubernetes Secret updated in place) takes effect
// without a restart; the old token stops working.
func TestBearerTokenRotation(t *testing.T) {
	old := reloadEvery
	reloadEvery = 20 * time.Millisecond
	t.Cleanup(func() { reloadEvery = old })
	f := newFixture(t, nil)
	body := `{"type":"jti","jti":"rot","exp":1767225600}`
	if r := f.postJSON(body, bearer); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	const rotated = "a-brand-new-bearer-token-after-rotation"
	writeSecret(t, "", f.cfg.BearerTokenFile, rotated)
	waitFor(t, 5*time.Second, func() bool {
		return f.postJSON(body, map[string]string{"Authorization": "Bearer " + rotated}).code == http.StatusOK
	})
	if r := f.postJSON(body, bearer); r.code != http.StatusUnauthorized {
		t.Fatalf("the old token still works: %d", r.code)
	}
}

func TestSecretReloadKeepsOldOnBrokenFile(t *testing.T) {
	p := writeSecret(t, t.TempDir(), "tok", testBearer)
	sec, err := loadSecret(p)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	for _, broken := range []string{"short", ""} {
		writeSecret(t, "", p, broken)
		sec.reload(log)
		if !sec.matches(testBearer) || sec.matches(broken) {
			t.Fatalf("after a broken file %q: old %v", broken, sec.matches(testBearer))
		}
	}
	_ = os.Remove(p)
	sec.reload(log)
	if !sec.matches(testBearer) {
		t.Fatal("a removed file dropped the secret")
	}
	var none *secret
	if none.matches("") {
		t.Fatal("no secret matched the empty string")
	}
}

// A renewed server certificate (cert-manager rewriting the Secret) is served without a
// restart.
func TestTLSCertificateRotation(t *testing.T) {
	old := reloadEvery
	reloadEvery = 20 * time.Millisecond
	t.Cleanup(func() { reloadEvery = old })
	p := newPKI(t)
	f := newFixture(t, func(c *Config) { c.TLSCert, c.TLSKey = p.certFile, p.keyFile })
	trusting := func(pool *x509.CertPool) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	f.client = trusting(p.pool)
	if r := f.postJSON(`{"type":"jti","jti":"t1","exp":1767225600}`, bearer); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	next := newPKI(t)
	certPEM, _ := os.ReadFile(next.certFile)
	keyPEM, _ := os.ReadFile(next.keyFile)
	writeSecret(t, "", p.keyFile, string(keyPEM))
	writeSecret(t, "", p.certFile, string(certPEM))
	client := trusting(next.pool)
	waitFor(t, 5*time.Second, func() bool {
		req, _ := http.NewRequest("POST", f.base+"/v1/revocations", strings.NewReader(`{"type":"jti","jti":"t2","exp":1767225600}`))
		req.Header.Set("Authorization", "Bearer "+testBearer)
		res, err := client.Do(req)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}
