package ingestd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/ingest"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/flags"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

const (
	testIssuer = "https://idp.example.com"
	testRP     = "rp-client-1"
	testBearer = "s3cret-bearer-token-for-tests"
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

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"--help"}, &out, &errb); code != 0 || errb.Len() != 0 {
		t.Fatalf("--help exit %d, stderr %q", code, errb.String())
	}
	for _, s := range []string{"Usage: revoked ingest", "/v1/revocations", "-bearer-token-file", "-logout-audience", "-oauth-client", "-oauth-privileged-client", "-client-cert-name", "-logout-cutoff", "-logout-allow-missing-exp", "-nats-url", "-max-body", "-leeway", "-jwks-url", "-log-level", "REVOKED_"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("help lacks %q", s)
		}
	}
	tests := map[string]struct {
		args []string
		want string
	}{
		"anonymous":           {nil, "no way to authenticate callers"},
		"keys for no one":     {[]string{"--jwks-file", "j"}, "no caller could authenticate"},
		"client-ca alone":     {[]string{"--client-ca", "ca.pem"}, "--client-ca needs --tls-cert"},
		"half TLS":            {[]string{"--bearer-token-file", "f", "--tls-cert", "c"}, "go together"},
		"logout without key":  {[]string{"--bearer-token-file", "f", "--logout-audience", "rp"}, "needs --jwks-file"},
		"bad oauth client":    {[]string{"--bearer-token-file", "f", "--jwks-file", "j", "--oauth-client", "nofile"}, "id:secret-file"},
		"both key sources":    {[]string{"--bearer-token-file", "f", "--jwks-file", "j", "--jwks-url", "u"}, "exclude each other"},
		"huge leeway":         {[]string{"--bearer-token-file", "f", "--leeway", "1h"}, "--leeway must be between"},
		"unknown flag":        {[]string{"--colour"}, "flag provided but not defined"},
		"bad size":            {[]string{"--max-body", "lots"}, "size"},
		"argument":            {[]string{"--bearer-token-file", "f", "serve"}, "unexpected argument"},
		"bad log level":       {[]string{"--bearer-token-file", "f", "--log-level", "nope"}, `--log-level must be debug, info, warn or error, not "nope"`},
		"bad logout mode":     {[]string{"--bearer-token-file", "f", "--logout-cutoff", "everyone"}, "sid, client or user"},
		"logout window":       {[]string{"--bearer-token-file", "f", "--logout-max-age", "5m"}, "duplicate window"},
		"privileged stranger": {[]string{"--bearer-token-file", "f", "--oauth-privileged-client", "admin"}, "not an --oauth-client"},
		"cert names alone":    {[]string{"--bearer-token-file", "f", "--client-cert-name", "idp"}, "needs --client-ca"},
		"no-exp stranger":     {[]string{"--bearer-token-file", "f", "--issuer", "https://a", "--logout-allow-missing-exp", "https://b"}, "not an --issuer"},
	}
	for name, tc := range tests {
		var out, errb bytes.Buffer
		code := Run(context.Background(), tc.args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q", name, code, errb.String())
		}
	}
	// A secret file that cannot be read stops the start: exit 1.
	var errb2 bytes.Buffer
	if code := Run(context.Background(), []string{"--bearer-token-file", "/nonexistent/token"}, &out, &errb2); code != 1 || !strings.Contains(errb2.String(), "bearer-token-file") {
		t.Errorf("unreadable token file: exit %d, %s", code, errb2.String())
	}
}

// Without the API credentials, a command line that serves only the endpoints that
// authenticate each request is valid (/v1/revocations is then off).
func TestParseSettingsWithoutAPICredentials(t *testing.T) {
	for name, args := range map[string][]string{
		"ssf only":          {"--ssf-transmitters", "ssf.yaml"},
		"logout only":       {"--jwks-file", "j", "--logout-audience", "rp"},
		"oauth client only": {"--jwks-file", "j", "--oauth-client", "app:secret-file"},
	} {
		if _, err := ParseSettings(args); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The defaults of the flags shared with the sidecar come from their group, and the
// environment fills what the command line does not set.
func TestParseSettings(t *testing.T) {
	t.Setenv("REVOKED_LEEWAY", "3s")
	t.Setenv("REVOKED_LOG_LEVEL", "debug")
	t.Setenv("REVOKED_ISSUER", "https://a,https://b")
	s, err := ParseSettings([]string{"--bearer-token-file", "f", "--issuer", "https://c"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Leeway != 3*time.Second || s.Log.Level != "debug" || strings.Join(s.Issuers, ",") != "https://c" {
		t.Fatalf("settings %+v", s)
	}
	os.Unsetenv("REVOKED_LEEWAY")
	if s, err = ParseSettings([]string{"--bearer-token-file", "f"}); err != nil || s.Leeway != flags.DefaultLeeway || s.Listen != ingest.DefaultListen || s.AdminAddr != ingest.DefaultAdminAddr || s.LogoutMaxAge != ingest.DefaultLogoutMaxAge {
		t.Fatalf("defaults %+v, %v", s, err)
	}
	t.Setenv("REVOKED_LOGOUT_CUTOFF", "https://c=client,user")
	if s, err = ParseSettings([]string{"--bearer-token-file", "f", "--issuer", "https://c"}); err != nil || strings.Join(s.LogoutCutoffs, " ") != "https://c=client user" {
		t.Fatalf("REVOKED_LOGOUT_CUTOFF: %v, %v", s.LogoutCutoffs, err)
	}
	t.Setenv("REVOKED_LOG_LEVEL", "nope")
	if _, err := ParseSettings([]string{"--bearer-token-file", "f"}); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("REVOKED_LOG_LEVEL=nope: %v", err)
	}
}

// TestRunServes runs revoked ingest as the command does, configured from flags and
// the environment, until its context ends.
func TestRunServes(t *testing.T) {
	ns := testsupport.StartNATS(t)
	ns.CreateStream(stream.Settings{})
	dir := t.TempDir()
	listen, admin := freeAddr(t), freeAddr(t)
	t.Setenv("REVOKED_NATS_URL", ns.URL())
	t.Setenv("REVOKED_LISTEN", listen)
	idp, err := devissuer.New("ES256", testIssuer, testRP)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--admin-addr", admin,
		"--bearer-token-file", writeFile(t, dir, "tok", []byte(testBearer+"\n")),
		"--jwks-file", writeFile(t, dir, "jwks.json", idp.JWKS()),
		"--issuer", testIssuer, "--logout-audience", testRP,
		"--log-level", "debug",
	}
	ctx, cancel := context.WithCancel(context.Background())
	var errb testsupport.LogBuffer
	done := make(chan int, 1)
	go func() { done <- Run(ctx, args, &bytes.Buffer{}, &errb) }()
	testsupport.Until(t, 15*time.Second, "ingest ready", func() bool {
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
	logoutTok := idp.Sign(jwt.MapClaims{
		"iss": testIssuer, "aud": testRP, "iat": time.Now().Unix(), "exp": time.Now().Add(2 * time.Minute).Unix(),
		"jti": "main-lt", "sid": "08a5019c-17e1-4977-8f42-65a12843ea02",
		"events": map[string]any{ingest.BackchannelLogoutEvent: map[string]any{}},
	})
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
		t.Fatal("Run did not stop")
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

func readAll(res *http.Response) string {
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}
