package authz

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/jwtkeys"
)

// jwksServer serves a JWK Set that the test can change, and counts fetches.
type jwksServer struct {
	mu      sync.Mutex
	keys    []any
	fetches atomic.Int32
	*httptest.Server
}

func newJWKSServer(t *testing.T, keys ...any) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...any) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

func newURLAuthorizer(t *testing.T, url string) *Authorizer {
	return newURLAuthorizerOpts(t, url, time.Hour, 0)
}

func newURLAuthorizerOpts(t *testing.T, url string, refresh time.Duration, cache int) *Authorizer {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	keys, err := jwtkeys.New(ctx, jwtkeys.Config{URL: url, Refresh: refresh}, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !keys.Loaded(ctx) {
		if time.Now().After(deadline) {
			t.Fatal("JWKS never loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a := NewAuthorizer(NewVerifier(keys, VerifierConfig{Leeway: time.Second}), blocklist.New(), Options{CacheSize: cache})
	a.SetGate(ReasonOK)
	return a
}

// Key rotation: a token signed with a key the sidecar has not seen yet triggers one
// JWKS fetch, and is accepted once the IdP publishes the key.
func TestJWKSURLRotation(t *testing.T) {
	old, _ := devissuer.New("ES256", testIss, testAud)
	rotated, _ := devissuer.New("ES256", testIss, testAud)
	srv := newJWKSServer(t, old.JWK())
	a := newURLAuthorizer(t, srv.URL)
	if d := a.Decide("Bearer "+old.Token("alice", time.Hour, nil), time.Now()); !d.Allowed() {
		t.Fatalf("token of the published key: %v", d.Reason)
	}
	before := srv.fetches.Load()
	srv.set(old.JWK(), rotated.JWK())
	if d := a.Decide("Bearer "+rotated.Token("alice", time.Hour, nil), time.Now()); !d.Allowed() {
		t.Fatalf("token of the rotated key: %v", d.Reason)
	}
	if got := srv.fetches.Load() - before; got != 1 {
		t.Fatalf("%d fetches for one new kid, want 1", got)
	}
}

// An attacker sending tokens with made-up kids cannot make the sidecar hammer the IdP.
func TestJWKSURLUnknownKIDIsRateLimited(t *testing.T) {
	known, _ := devissuer.New("EdDSA", testIss, testAud)
	srv := newJWKSServer(t, known.JWK())
	a := newURLAuthorizer(t, srv.URL)
	before := srv.fetches.Load()
	start := time.Now()
	for i := 0; i < 20; i++ {
		forged, _ := devissuer.New("EdDSA", testIss, testAud)
		if d := a.Decide("Bearer "+forged.Token("eve", time.Hour, nil), time.Now()); d.Reason != ReasonUnknownKey {
			t.Fatalf("forged kid: %v", d.Reason)
		}
	}
	if got := srv.fetches.Load() - before; got > 2 {
		t.Fatalf("%d JWKS fetches for 20 unknown kids in %v; the refresh is not rate limited", got, time.Since(start))
	}
}

// The file is reloaded: a key added is used, and a key removed (it leaked) stops
// verifying at once, its tokens already in the verified-token cache included (issue 9
// row 4: they stayed allowed until they expired).
func TestJWKSFileReload(t *testing.T) {
	a1, _ := devissuer.New("EdDSA", testIss, testAud)
	a2, _ := devissuer.New("EdDSA", testIss, testAud)
	path := filepath.Join(t.TempDir(), "jwks.json")
	write := func(keys ...any) {
		b, _ := json.Marshal(map[string]any{"keys": keys})
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(a1.JWK())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys, err := jwtkeys.New(ctx, jwtkeys.Config{File: path, Refresh: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthorizer(NewVerifier(keys, VerifierConfig{}), blocklist.New(), Options{CacheSize: 100})
	a.SetGate(ReasonOK)
	old, rotated := "Bearer "+a1.Token("x", time.Hour, nil), "Bearer "+a2.Token("x", time.Hour, nil)
	if d := a.Decide(rotated, time.Now()); d.Reason != ReasonUnknownKey {
		t.Fatalf("key not yet in the file: %v", d.Reason)
	}
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	for range 2 { // the second from the cache
		if d := a.Decide(old, time.Now()); !d.Allowed() {
			t.Fatalf("token of the first key: %v", d.Reason)
		}
	}
	gen := keys.Generation()
	write(a1.JWK(), a2.JWK())
	until("rotated file never picked up", func() bool { return a.Decide(rotated, time.Now()).Allowed() })
	if keys.Generation() != gen {
		t.Error("adding a key moved the generation: every cached token is verified again for nothing")
	}
	if d := a.Decide(old, time.Now()); !d.Allowed() {
		t.Fatalf("token of the first key after a key was added: %v", d.Reason)
	}
	// a1 leaked: removed from the file. Its token, cached, is refused from now on.
	write(a2.JWK())
	until("a token of a removed key is still allowed", func() bool { return a.Decide(old, time.Now()).Reason == ReasonUnknownKey })
	for _, tok := range []string{old, "Bearer " + a1.Token("y", time.Hour, nil)} {
		if d := a.Decide(tok, time.Now()); d.Reason != ReasonUnknownKey {
			t.Fatalf("token of the removed key: %v", d.Reason)
		}
	}
	if d := a.Decide(rotated, time.Now()); !d.Allowed() {
		t.Fatalf("token of the remaining key: %v", d.Reason)
	}
	// A broken file keeps the keys that work.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if d := a.Decide(rotated, time.Now()); !d.Allowed() {
		t.Fatalf("broken file dropped the keys: %v", d.Reason)
	}
}

// The same over a JWKS URL: a key the IdP stops publishing stops verifying at the next
// refresh, for cached tokens too.
func TestJWKSURLKeyRemoved(t *testing.T) {
	leaked, _ := devissuer.New("ES256", testIss, testAud)
	kept, _ := devissuer.New("ES256", testIss, testAud)
	srv := newJWKSServer(t, leaked.JWK(), kept.JWK())
	a := newURLAuthorizerOpts(t, srv.URL, 50*time.Millisecond, 100)
	old, other := "Bearer "+leaked.Token("alice", time.Hour, nil), "Bearer "+kept.Token("bob", time.Hour, nil)
	for range 2 { // the second from the cache
		for _, tok := range []string{old, other} {
			if d := a.Decide(tok, time.Now()); !d.Allowed() {
				t.Fatalf("published key: %v", d.Reason)
			}
		}
	}
	srv.set(kept.JWK())
	deadline := time.Now().Add(5 * time.Second)
	for a.Decide(old, time.Now()).Reason != ReasonUnknownKey {
		if time.Now().After(deadline) {
			t.Fatal("a cached token of a key removed from the JWKS URL is still allowed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := a.Decide(other, time.Now()); !d.Allowed() {
		t.Fatalf("token of the key still published: %v", d.Reason)
	}
}

// The JWKS URL is down when the pod starts: the first fetch is retried with backoff,
// not at the next --jwks-refresh (1 h), so the keys load soon after it is back (issue 9
// row 5).
func TestJWKSURLDownAtStart(t *testing.T) {
	iss, _ := devissuer.New("EdDSA", testIss, testAud)
	const failures = 3
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if fetches.Add(1) <= failures {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(iss.JWKS())
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	start := time.Now()
	keys, err := jwtkeys.New(ctx, jwtkeys.Config{URL: srv.URL, Refresh: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if keys.Loaded(ctx) {
		t.Fatal("loaded while the URL fails")
	}
	for !keys.Loaded(ctx) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("keys not loaded 10 s after start (%d fetches); the first fetch is not retried", fetches.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// 250 ms, 500 ms, 1 s: loaded on the fourth fetch, about 1.75 s after start.
	if n := fetches.Load(); n != failures+1 {
		t.Errorf("%d fetches, want %d: retried without backoff, or after success", n, failures+1)
	}
	v := NewVerifier(keys, VerifierConfig{})
	if _, r := v.Verify(iss.Token("alice", time.Hour, nil), time.Now()); r != ReasonOK {
		t.Fatalf("after the URL came back: %v", r)
	}
	time.Sleep(300 * time.Millisecond)
	if n := fetches.Load(); n != failures+1 {
		t.Errorf("%d fetches: retries went on once the keys loaded", n)
	}
}

// Keys published for encryption (use "enc", or key_ops without "verify") never verify
// a signature, with a kid or without, from a file or a URL.
func TestJWKSKeysNotForSignatures(t *testing.T) {
	sig, _ := devissuer.New("EdDSA", testIss, testAud)
	enc, _ := devissuer.New("EdDSA", testIss, testAud)
	ops, _ := devissuer.New("ES256", testIss, testAud)
	encJWK, opsJWK, sigJWK := enc.JWK(), ops.JWK(), sig.JWK()
	encJWK["use"] = "enc"
	delete(opsJWK, "use")
	opsJWK["key_ops"] = []string{"encrypt"}
	sigJWK["key_ops"] = []string{"verify"}
	set, _ := json.Marshal(map[string]any{"keys": []any{encJWK, opsJWK, sigJWK}})

	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, set, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(set) }))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, kc := range []jwtkeys.Config{{File: path}, {URL: srv.URL}} {
		keys, err := jwtkeys.New(ctx, kc, nil)
		if err != nil {
			t.Fatal(err)
		}
		v := NewVerifier(keys, VerifierConfig{})
		noKID := func(i *devissuer.Issuer) string {
			kid := i.KID
			i.KID = ""
			defer func() { i.KID = kid }()
			return i.Token("alice", time.Hour, nil)
		}
		for _, c := range []struct {
			name, tok string
			want      Reason
		}{
			{"use sig, key_ops verify", sig.Token("alice", time.Hour, nil), ReasonOK},
			{"use enc", enc.Token("alice", time.Hour, nil), ReasonUnknownKey},
			{"key_ops encrypt", ops.Token("alice", time.Hour, nil), ReasonUnknownKey},
			{"use enc, no kid", noKID(enc), ReasonBadSignature},
			{"key_ops encrypt, no kid", noKID(ops), ReasonBadSignature},
			{"use sig, no kid", noKID(sig), ReasonOK},
		} {
			if _, r := v.Verify(c.tok, time.Now()); r != c.want {
				t.Errorf("file %q url %q: %s: %v, want %v", kc.File, kc.URL, c.name, r, c.want)
			}
		}
	}
	// A file holding only keys that cannot verify is no key set.
	encOnly, _ := json.Marshal(map[string]any{"keys": []any{encJWK}})
	if err := os.WriteFile(path, encOnly, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := jwtkeys.New(ctx, jwtkeys.Config{File: path}, nil); err == nil {
		t.Error("a JWKS file of encryption keys only accepted")
	}
}

func TestNewKeysRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := jwtkeys.New(ctx, jwtkeys.Config{}, nil); err == nil {
		t.Error("no key source accepted")
	}
	if _, err := jwtkeys.New(ctx, jwtkeys.Config{HMACSecret: []byte("short")}, nil); err == nil {
		t.Error("a short HMAC secret accepted")
	}
	if _, err := jwtkeys.New(ctx, jwtkeys.Config{File: filepath.Join(t.TempDir(), "missing.json")}, nil); err == nil {
		t.Error("a missing JWKS file accepted")
	}
}
