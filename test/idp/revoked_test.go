//go:build idp

package idp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

var httpClient = &http.Client{Timeout: 10 * time.Second}

// startNATS runs an embedded NATS server with the revocation stream.
func startNATS(t *testing.T) string {
	ns := testsupport.StartNATS(t)
	ns.CreateStream(stream.Settings{})
	return ns.URL()
}

// sidecar is a `revoked` process, asked over gRPC as Envoy asks.
type sidecar struct {
	admin  string
	client authv3.AuthorizationClient
	proc   *proc
}

// startSidecar runs `revoked` against the IdP's JWKS URL and issuer, and waits until it
// is ready.
func startSidecar(t *testing.T, natsURL, jwksURL, issuer string) *sidecar {
	t.Helper()
	p, rec := startProc(t, "revoked", binary(t, "REVOKED_BIN", "revoked"), []string{
		"--grpc-addr", "127.0.0.1:0",
		"--http-addr", "",
		"--admin-addr", "127.0.0.1:0",
		"--nats-url", natsURL,
		"--jwks-url", jwksURL,
		"--issuer", issuer,
		"--log-level", "debug",
	}, nil, "revoked started")
	grpcAddr, _ := rec["grpc"].(string)
	admin, _ := rec["admin"].(string)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s := &sidecar{admin: admin, client: authv3.NewAuthorizationClient(conn), proc: p}
	waitReady(t, "revoked", admin)
	return s
}

// check asks the sidecar about token as Envoy would and returns the decision's reason
// (ok, revoked_jti, revoked_cutoff, ...).
func (s *sidecar) check(t *testing.T, token string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.client.Check(ctx, envoyreq.Check(envoyreq.Bearer(token)))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
}

// wantAllowed fails the test unless the sidecar allows token.
func (s *sidecar) wantAllowed(t *testing.T, what, token string) {
	t.Helper()
	if got := s.check(t, token); got != "ok" {
		t.Fatalf("%s: sidecar says %q, want ok", what, got)
	}
	step(t, "%s: allowed", what)
}

// waitDenied waits until the sidecar denies token for reason: the revocation travels
// from the IdP through ingest and the stream to the replica.
func (s *sidecar) waitDenied(t *testing.T, what, token, reason string, since time.Time) {
	t.Helper()
	testsupport.WaitFor(t, 10*time.Second, what+" denied", func() error {
		if got := s.check(t, token); got != reason {
			return fmt.Errorf("sidecar says %q, want %q", got, reason)
		}
		return nil
	})
	step(t, "%s: denied (%s), %s after the logout or revocation began", what, reason, time.Since(since).Round(time.Millisecond))
}

// ingest is a `revoked ingest` process.
type ingest struct {
	url, admin, bearer string
	proc               *proc
}

// startIngest runs `revoked ingest` on port (0: any) with the IdP's keys and the given
// extra flags (--logout-audience, --logout-cutoff, ...), and waits until it is ready.
func startIngest(t *testing.T, name string, port int, natsURL, jwksURL, issuer string, flags ...string) *ingest {
	t.Helper()
	bearer := "ingest-bearer-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	args := append([]string{"ingest",
		"--listen", "127.0.0.1:" + strconv.Itoa(port),
		"--admin-addr", "127.0.0.1:0",
		"--nats-url", natsURL,
		"--bearer-token-file", secretFile(t, name+"-bearer", bearer),
		"--jwks-url", jwksURL,
		"--issuer", issuer,
		"--log-level", "debug",
	}, flags...)
	p, rec := startProc(t, name, binary(t, "REVOKED_BIN", "revoked"), args, nil, "ingest API listening")
	addr, _ := rec["addr"].(string)
	admin, _ := rec["admin"].(string)
	in := &ingest{url: "http://" + addr, admin: admin, bearer: bearer, proc: p}
	waitReady(t, name, admin)
	return in
}

// revoke calls RFC 7009 /oauth2/revoke with token, authenticated as client (HTTP
// Basic, an --oauth-client) or, when client is empty, by the bearer token; it returns
// the status and body.
func (in *ingest) revoke(t *testing.T, token, client, secret string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, in.url+"/oauth2/revoke",
		strings.NewReader(url.Values{"token": {token}, "token_type_hint": {"access_token"}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if client != "" {
		req.SetBasicAuth(url.QueryEscape(client), url.QueryEscape(secret))
	} else {
		req.Header.Set("Authorization", "Bearer "+in.bearer)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body)
}

// metric returns the value of series exactly as /metrics writes it, or -1.
func (in *ingest) metric(t *testing.T, series string) float64 {
	t.Helper()
	_, body := get(t, "http://"+in.admin+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

func waitReady(t *testing.T, name, admin string) {
	t.Helper()
	testsupport.WaitFor(t, 60*time.Second, name+" ready", func() error {
		resp, err := httpClient.Get("http://" + admin + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return nil
	})
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// noTokenLogged fails the test if a log of procs holds a token's signature (the part
// that makes a logged token usable), or the token whole.
func noTokenLogged(t *testing.T, procs []*proc, tokens ...string) {
	t.Helper()
	for _, p := range procs {
		for _, tok := range tokens {
			sig := tok[strings.LastIndexByte(tok, '.')+1:]
			if p.logContains(tok) || (len(sig) >= 16 && p.logContains(sig)) {
				t.Errorf("the log of %s holds a token", p.name)
			}
		}
	}
}
