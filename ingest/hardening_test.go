package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/event"
)

// Issue 12 point 4: each test here fails without its fix.

// A CA often signs more than the ingest's callers: --client-cert-name keeps the others out.
func TestMutualTLSCertNames(t *testing.T) {
	p := newPKI(t)
	f := newFixture(t, func(c *Config) {
		c.TLSCert, c.TLSKey, c.ClientCA = p.certFile, p.keyFile, p.caFile
		c.ClientCertNames = []string{"idp-client"}
	})
	client := func(cn string) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: p.pool, Certificates: []tls.Certificate{p.Issue(t, cn, x509.ExtKeyUsageClientAuth).Pair},
		}}}
	}
	f.client = client("idp-client")
	if r := f.postJSON(`{"type":"jti","jti":"named","exp":1767225600}`, nil); r.code != http.StatusOK {
		t.Fatalf("an allowed name: %d %s", r.code, r.body)
	}
	f.client = client("some-workload")
	r := f.postJSON(`{"type":"jti","jti":"workload","exp":1767225600}`, nil)
	if r.code != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("another certificate of the same CA: %d %s", r.code, r.body)
	}
	// The bearer token still works over the same connection.
	if r := f.postJSON(`{"type":"jti","jti":"bearer","exp":1767225600}`, bearer); r.code != http.StatusOK {
		t.Fatalf("bearer with a certificate not allowed: %d %s", r.code, r.body)
	}
	if evs := f.events(); len(evs) != 2 || evs[0].JTI != "named" || evs[1].JTI != "bearer" {
		t.Fatalf("stream %+v", evs)
	}
}

// Anyone may post to /backchannel-logout: it reads a few KiB at most.
func TestBackchannelLogoutBodyBound(t *testing.T) {
	f := newFixture(t, nil)
	r := f.postForm("/backchannel-logout", url.Values{"logout_token": {strings.Repeat("a", maxLogoutBody)}}, nil)
	if r.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if got := f.metric("revoked_ingest_events_rejected_total", map[string]string{"endpoint": "backchannel_logout", "reason": "bad_body"}); got != 1 {
		t.Errorf("rejected{bad_body} = %v", got)
	}
	// A real logout token fits, with room to spare.
	tok := f.key.sign(t, logoutClaims("fits", nil), logoutTyp)
	if len(tok) > maxLogoutBody/4 {
		t.Fatalf("a logout token of %d bytes", len(tok))
	}
	if r := f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
}

// An anonymous caller's token with an unknown kid is answered at once, not after a
// JWKS fetch; the fetch runs in the background, and the IdP's retry finds the key.
func TestBackchannelLogoutUnknownKidDoesNotWait(t *testing.T) {
	k1, k2 := newSigner(t, "k1"), newSigner(t, "k2")
	const slow = 1500 * time.Millisecond // jwtkeys gives an unknown-kid fetch 2 s
	var fetches atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys := []map[string]string{k1.jwk()}
		if fetches.Add(1) > 1 { // after a rotation, from a slow IdP
			keys = append(keys, k2.jwk())
			select {
			case <-time.After(slow):
			case <-r.Context().Done():
				return
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	defer idp.Close()
	f := newFixture(t, func(c *Config) { c.JWKSFile, c.JWKSURL = "", idp.URL })
	tok := k2.sign(t, logoutClaims("rotated", nil), logoutTyp)

	start := time.Now()
	r := f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil)
	took := time.Since(start)
	if took > slow/3 {
		t.Fatalf("the answer waited %s on the key fetch", took)
	}
	t.Logf("unknown kid answered in %s (the JWKS answers in %s)", took, slow)
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, "not known yet") {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if got := f.metric("revoked_ingest_events_rejected_total", map[string]string{"endpoint": "backchannel_logout", "reason": "unknown_key"}); got != 1 {
		t.Errorf("rejected{unknown_key} = %v", got)
	}
	// Many such tokens start one fetch, not one each.
	for range 5 {
		f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil)
	}
	waitFor(t, 3*slow, func() bool {
		return f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil).code == http.StatusOK
	})
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d JWKS fetches, want the first and one refresh", n)
	}
}

// The replay of a logout token at another replica is refused by the stream's
// duplicate window only: the acceptance window must fit the shortest the contract
// allows (2 min).
func TestLogoutWindowFitsDuplicateWindow(t *testing.T) {
	cfg := testConfig(t, "nats://127.0.0.1:1", newSigner(t, "k1"))
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.LogoutMaxAge = 5 * time.Minute // the old default: replays at another replica after 2 min got through
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "duplicate window") {
		t.Fatalf("5m accepted: %v", err)
	}
	cfg.LogoutMaxAge, cfg.Leeway = DefaultLogoutMaxAge, 20*time.Second
	if err := cfg.Validate(); err == nil {
		t.Fatal("90s + 2 × 20s accepted")
	}
}

// A refusal by the stream that a retry cannot change is not answered 503 (which
// invites the caller to retry for ever).
func TestStreamRefusalIsNot503(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	st, err := f.js.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	small := info.Config
	small.MaxMsgSize = 512
	if _, err := f.js.UpdateStream(ctx, small); err != nil {
		t.Fatal(err)
	}
	big := `{"type":"jti","jti":"big","exp":1767225600,"sub":"` + strings.Repeat("s", 600) + `"}`
	r := f.postJSON(big, bearer)
	if r.code != http.StatusRequestEntityTooLarge || r.json(t)["error"] != "too_large" || r.header.Get("Retry-After") != "" {
		t.Fatalf("event larger than the stream takes: %d %s", r.code, r.body)
	}
	r = f.postJSON(`[`+big+`,{"type":"jti","jti":"small","exp":1767225600}]`, bearer)
	if r.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a batch with such an event: %d %s", r.code, r.body)
	}

	// Another stream than --stream on the subjects: the set-up's fault, 500.
	f2 := newFixture(t, func(c *Config) { c.Stream = "SOMETHING_ELSE" })
	r = f2.postJSON(`{"type":"jti","jti":"x","exp":1767225600}`, bearer)
	if r.code != http.StatusInternalServerError || !strings.Contains(r.body, "operator") {
		t.Fatalf("wrong stream: %d %s", r.code, r.body)
	}
	// An outage is still 503: see TestRevocationsNATSOutageAnswers503.
}
