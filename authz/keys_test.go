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
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	keys, err := NewKeys(ctx, KeysConfig{URL: url, Refresh: time.Hour}, nil)
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
	a := NewAuthorizer(NewVerifier(keys, VerifierConfig{Leeway: time.Second}), blocklist.New(), Options{})
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

func TestJWKSFileReload(t *testing.T) {
	a1, _ := devissuer.New("EdDSA", testIss, testAud)
	a2, _ := devissuer.New("EdDSA", testIss, testAud)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, a1.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	keys, err := NewKeys(ctx, KeysConfig{File: path, Refresh: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := NewVerifier(keys, VerifierConfig{})
	if _, r := v.Verify(a2.Token("x", time.Hour, nil), time.Now()); r != ReasonUnknownKey {
		t.Fatalf("key not yet in the file: %v", r)
	}
	if err := os.WriteFile(path, a2.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, r := v.Verify(a2.Token("x", time.Hour, nil), time.Now()); r == ReasonOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rotated file never picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A broken file keeps the keys that work.
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if _, r := v.Verify(a2.Token("x", time.Hour, nil), time.Now()); r != ReasonOK {
		t.Fatalf("broken file dropped the keys: %v", r)
	}
}

func TestNewKeysRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := NewKeys(ctx, KeysConfig{}, nil); err == nil {
		t.Error("no key source accepted")
	}
	if _, err := NewKeys(ctx, KeysConfig{HMACSecret: []byte("short")}, nil); err == nil {
		t.Error("a short HMAC secret accepted")
	}
	if _, err := NewKeys(ctx, KeysConfig{File: filepath.Join(t.TempDir(), "missing.json")}, nil); err == nil {
		t.Error("a missing JWKS file accepted")
	}
}
