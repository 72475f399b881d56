package jwtkeys

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// jwks returns a JWKS of fresh P-256 keys under kids.
func jwks(t *testing.T, kids ...string) []byte {
	t.Helper()
	var keys []map[string]string
	for _, kid := range kids {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pad := func(b []byte) string {
			return base64.RawURLEncoding.EncodeToString(append(make([]byte, 32-len(b)), b...))
		}
		keys = append(keys, map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
			"x": pad(k.X.Bytes()), "y": pad(k.Y.Bytes())})
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// Refresh fetches a JWKS URL, or reads a JWKS file, at once: a key added since is
// held after it, without waiting for the periodic refresh or the file's poll.
func TestRefresh(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var served []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(served)
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "jwks.json")
	for name, cfg := range map[string]Config{
		"url":  {URL: srv.URL, Refresh: time.Hour},
		"file": {File: file, Refresh: time.Hour}, // polled every 10 s at most: Refresh reads it first
	} {
		t.Run(name, func(t *testing.T) {
			mu.Lock()
			served = jwks(t, "k1")
			mu.Unlock()
			if err := os.WriteFile(file, jwks(t, "k1"), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := New(ctx, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !k.HasKID(ctx, "k1") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			served = jwks(t, "k1", "k2")
			mu.Unlock()
			if err := os.WriteFile(file, jwks(t, "k1", "k2"), 0o600); err != nil {
				t.Fatal(err)
			}
			if k.HasKID(ctx, "k2") {
				t.Fatal("k2 held before the refresh")
			}
			if err := k.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if !k.HasKID(ctx, "k2") {
				t.Fatal("k2 not held after the refresh")
			}
		})
	}
	hmacOnly, err := New(ctx, Config{HMACSecret: make([]byte, 32)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if hmacOnly.Refresh(ctx) == nil {
		t.Error("an HMAC secret refreshed")
	}
}
