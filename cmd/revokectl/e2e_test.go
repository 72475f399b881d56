package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/ingest"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/ingestd"
	"github.com/revoked-dev/revoked/internal/sidecar"
	"github.com/revoked-dev/revoked/internal/testsupport"
)

// TestEndToEnd runs a real sidecar on a real NATS server with JetStream, and revokes
// three of its tokens the three ways the README gives: revokectl revoke token, the
// ingest API's RFC 7009 endpoint, and an OpenID Connect back-channel logout. After each,
// revokectl check, which sends the CheckRequest Envoy sends, is denied with "token
// revoked", while an untouched token stays allowed.
func TestEndToEnd(t *testing.T) {
	const iss, aud, rp = "https://idp.example.com", "orders-api", "web-rp"
	ns := testsupport.StartNATS(t)
	natsFlag := "--nats-url=" + ns.URL()
	cli(t, "", "stream", "init", natsFlag).want(t, exitOK)

	issuer, err := devissuer.New("ES256", iss, aud)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := sidecar.ParseSettings([]string{
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--admin-addr", "127.0.0.1:0",
		"--nats-url", ns.URL(), "--jwks-file", jwks, "--issuer", iss, "--audience", aud,
		"--token-cache-size", "1000",
	})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sidecar.Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.Close)
	poll(t, "sidecar ready", sc.Ready)
	addr := "--addr=" + sc.GRPCAddr()

	untouched := issuer.Token("user-1", time.Hour, nil)
	byCLI := issuer.Token("user-2", time.Hour, nil)
	byRFC7009 := issuer.Token("user-3", time.Hour, nil)
	bySession := issuer.Token("user-4", time.Hour, jwt.MapClaims{"sid": "session-4"})
	for _, tok := range []string{untouched, byCLI, byRFC7009, bySession} {
		if r := cli(t, "", "check", addr, tok).want(t, exitOK); !strings.HasPrefix(r.stdout, "allow") {
			t.Fatalf("before: %q", r.stdout)
		}
	}

	// 1. revokectl revoke token.
	r := cli(t, "", "revoke", "token", byCLI, "--reason", "compromised", natsFlag).want(t, exitOK)
	if !strings.Contains(r.stdout, "sequence 1") {
		t.Errorf("revoke printed %q", r.stdout)
	}
	waitDenied(t, addr, byCLI)

	// 2 and 3: the ingest API, as an IdP calls it.
	secret := filepath.Join(dir, "bearer")
	if err := os.WriteFile(secret, []byte("ingest-bearer-token-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	icfg, err := ingestd.ParseSettings([]string{
		"--listen", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--nats-url", ns.URL(),
		"--bearer-token-file", secret, "--jwks-file", jwks, "--issuer", iss, "--audience", aud,
		"--logout-audience", rp,
	})
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingest.Start(context.Background(), &icfg.Config, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ing.Close(context.Background()) })
	poll(t, "ingest ready", func() bool { return ing.Ready(context.Background()) == nil })

	req, _ := http.NewRequest("POST", "http://"+ing.Addr()+"/oauth2/revoke", strings.NewReader(url.Values{"token": {byRFC7009}, "token_type_hint": {"access_token"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer ingest-bearer-token-0123456789")
	postOK(t, req)
	waitDenied(t, addr, byRFC7009)

	logout := issuer.Sign(jwt.MapClaims{
		"iss": iss, "aud": rp, "iat": time.Now().Unix(), "exp": time.Now().Add(2 * time.Minute).Unix(),
		"jti": devissuer.RandomID(), "sid": "session-4",
		"events": map[string]any{ingest.BackchannelLogoutEvent: map[string]any{}},
	})
	req, _ = http.NewRequest("POST", "http://"+ing.Addr()+"/backchannel-logout", strings.NewReader(url.Values{"logout_token": {logout}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	postOK(t, req)
	waitDenied(t, addr, bySession)

	cli(t, "", "check", addr, untouched).want(t, exitOK)
	r = cli(t, "", "stream", "info", natsFlag).want(t, exitOK)
	if !strings.Contains(r.stdout, "messages          3") {
		t.Errorf("stream info:\n%s", r.stdout)
	}
}

func postOK(t *testing.T, req *http.Request) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d", req.URL.Path, res.StatusCode)
	}
}

func waitDenied(t *testing.T, addr, tok string) {
	t.Helper()
	var last result
	poll(t, "token denied", func() bool {
		last = cli(t, "", "check", addr, tok)
		return last.code == exitFailed
	})
	if last.stdout != "deny: 401 Unauthorized: token revoked\n  www-authenticate: Bearer error=\"invalid_token\", error_description=\"token revoked\"\n" {
		t.Errorf("check printed %q", last.stdout)
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
