package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/internal/logbuf"
	"github.com/revoked-dev/revoked/internal/testnats"
	"github.com/revoked-dev/revoked/publish"
	"github.com/revoked-dev/revoked/stream"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestMainFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, s := range []string{"Usage: revoked ingest", "/v1/revocations", "-bearer-token-file", "-logout-audience", "-oauth-client", "-nats-url", "-max-body", "REVOKED_"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("help lacks %q", s)
		}
	}
	tests := map[string]struct {
		args []string
		want string
	}{
		"anonymous":          {nil, "no way to authenticate callers"},
		"client-ca alone":    {[]string{"--client-ca", "ca.pem"}, "--client-ca needs --tls-cert"},
		"half TLS":           {[]string{"--bearer-token-file", "f", "--tls-cert", "c"}, "go together"},
		"logout without key": {[]string{"--bearer-token-file", "f", "--logout-audience", "rp"}, "needs --jwks-file"},
		"bad oauth client":   {[]string{"--bearer-token-file", "f", "--jwks-file", "j", "--oauth-client", "nofile"}, "id:secret-file"},
		"unknown flag":       {[]string{"--colour"}, "flag provided but not defined"},
		"bad size":           {[]string{"--max-body", "lots"}, "size"},
		"argument":           {[]string{"--bearer-token-file", "f", "serve"}, "unexpected argument"},
	}
	for name, tc := range tests {
		var out, errb bytes.Buffer
		code := Main(context.Background(), tc.args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q", name, code, errb.String())
		}
	}
	// A secret file that cannot be read stops the start: exit 1.
	var errb2 bytes.Buffer
	if code := Main(context.Background(), []string{"--bearer-token-file", "/nonexistent/token"}, &out, &errb2); code != 1 || !strings.Contains(errb2.String(), "bearer-token-file") {
		t.Errorf("unreadable token file: exit %d, %s", code, errb2.String())
	}
}

// TestMainServes runs revoked ingest as the command does, configured from flags and
// the environment, until its context ends.
func TestMainServes(t *testing.T) {
	ns := testnats.Start(t)
	ns.CreateStream(stream.Settings{})
	dir := t.TempDir()
	listen, admin := freeAddr(t), freeAddr(t)
	t.Setenv("REVOKED_NATS_URL", ns.URL())
	t.Setenv("REVOKED_LISTEN", listen)
	key := newSigner(t, "main")
	args := []string{
		"--admin-addr", admin,
		"--bearer-token-file", writeSecret(t, dir, "tok", testBearer),
		"--jwks-file", writeJWKS(t, dir, key),
		"--issuer", testIssuer, "--logout-audience", testRP,
		"--log-level", "debug",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var errb logbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, &bytes.Buffer{}, &errb) }()
	waitFor(t, 15*time.Second, func() bool {
		res, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	req, _ := http.NewRequest("POST", "http://"+listen+"/v1/revocations", strings.NewReader(`{"type":"jti","jti":"main-1","exp":1767225600}`))
	req.Header.Set("Authorization", "Bearer "+testBearer)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(res); res.StatusCode != 200 || !strings.Contains(body, `"seq":1`) {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	logoutTok := key.sign(t, logoutClaims("main-lt", nil), logoutTyp)
	res, err = http.PostForm("http://"+listen+"/backchannel-logout", map[string][]string{"logout_token": {logoutTok}})
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(res); res.StatusCode != 200 {
		t.Fatalf("logout %d %s", res.StatusCode, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Main did not stop")
	}
	logs := errb.String()
	if strings.Contains(logs, testBearer) || strings.Contains(logs, logoutTok) || strings.Contains(logs, "main-lt") {
		t.Fatal("a secret or a token id reached the logs")
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line not JSON: %q", line)
		}
	}
	if !strings.Contains(logs, "ingest API listening") || !strings.Contains(logs, "session logged out") {
		t.Errorf("logs:\n%s", logs)
	}
}

// FuzzParseEvents feeds arbitrary bodies to the /v1/revocations parser: it never
// panics, and whatever it accepts is a list of valid events the publisher can send.
func FuzzParseEvents(f *testing.F) {
	for _, seed := range []string{
		`{"type":"jti","jti":"7f3c","exp":1767225600}`,
		`[{"type":"cutoff","claim":"sub","value":"u","not_before":1},{"type":"jti","jti":"a","exp":2}]`,
		`[]`, `{}`, `[{}]`, `[1,"x",null]`, `null`, ` `, `{"type":"jti"`, `[{"type":"jti","jti":"a","exp":1}] x`,
		"{\"type\":\"jti\",\"jti\":\"\xff\",\"exp\":1}",
		`{"type":"jti","jti":"a","exp":1,"event_id":"a\nb"}`,
		`{"type":"cutoff","claim":"sid","value":"` + strings.Repeat("v", 300) + `","not_before":1}`,
	} {
		f.Add([]byte(seed))
	}
	p := publish.New(nil, publish.Config{})
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, bad, err := parseEvents(body, p)
		if err != nil {
			if len(evs) > 0 || len(bad) > 0 {
				t.Fatal("events with an error")
			}
			return
		}
		if len(evs)+len(bad) == 0 {
			t.Fatal("accepted a body with no event")
		}
		for _, b := range bad {
			if b.Reason == "" || b.Error == "" {
				t.Fatalf("rejection without a reason: %+v", b)
			}
		}
		for _, ev := range evs {
			if _, err := p.Message(&ev); err != nil {
				t.Fatalf("accepted %+v the publisher refuses: %v", ev, err)
			}
		}
	})
}

// FuzzLogoutToken feeds arbitrary logout_token strings, and tokens signed by a stranger,
// to the validator: it never panics and never accepts a token it cannot verify.
func FuzzLogoutToken(f *testing.F) {
	key := newSigner(f, "k1")
	stranger := newSigner(f, "k1")
	cfg := &Config{Leeway: 30 * time.Second, LogoutMaxAge: 5 * time.Minute, LogoutAudiences: []string{testRP}, Issuers: []string{testIssuer}}
	cfg.JWKSFile = writeJWKS(f, f.TempDir(), key)
	s := &Server{cfg: cfg, now: time.Now}
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	keys, err := newKeysForTest(ctx, cfg.JWKSFile)
	if err != nil {
		f.Fatal(err)
	}
	s.keys = keys
	f.Add(key.sign(f, logoutClaims("seed", nil), logoutTyp), false)
	f.Add(stranger.sign(f, logoutClaims("seed", nil), logoutTyp), true)
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", true)
	f.Add("a.b.c", true)
	f.Add("", true)
	f.Fuzz(func(t *testing.T, raw string, forged bool) {
		if forged {
			// A token with raw's claims, signed by a key the JWKS does not hold.
			raw = stranger.sign(t, jwt.MapClaims{"iss": testIssuer, "aud": testRP, "jti": raw, "sid": raw, "iat": time.Now().Unix(),
				"exp": time.Now().Add(time.Minute).Unix(), "events": map[string]any{BackchannelLogoutEvent: map[string]any{}}}, logoutTyp)
		}
		lt, err := s.validateLogoutToken(raw)
		if err != nil {
			return
		}
		if forged {
			t.Fatal("accepted a token signed by a stranger")
		}
		if lt.jti == "" || lt.iss == "" || (lt.sid == "" && lt.sub == "") {
			t.Fatalf("accepted an incomplete token %+v", lt)
		}
	})
}
