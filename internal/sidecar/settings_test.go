package sidecar

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultsMatchContract(t *testing.T) {
	c, err := ParseSettings([]string{"--jwks-file", "k.json"})
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		c.GRPCAddr: "127.0.0.1:9191", c.HTTPAddr: "127.0.0.1:9192", c.AdminAddr: "127.0.0.1:9193",
		c.NATS.URL: "nats://127.0.0.1:4222", c.Stream: "REVOCATIONS",
	} {
		if got != want {
			t.Errorf("default %q, want %q", got, want)
		}
	}
	if c.Leeway != 10*time.Second || c.MaxTokenLife != 24*time.Hour || c.JWKSRefresh != time.Hour || c.Log.Level != "info" {
		t.Errorf("leeway %v, max token lifetime %v, jwks refresh %v, log level %q", c.Leeway, c.MaxTokenLife, c.JWKSRefresh, c.Log.Level)
	}
	if strings.Join(c.CutoffClaims, ",") != "sub,sid,client_id" {
		t.Errorf("cutoff claims %v", c.CutoffClaims)
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("REVOKED_NATS_URL", "nats://a:4222,nats://b:4222")
	t.Setenv("REVOKED_JWKS_URL", "https://idp/jwks")
	t.Setenv("REVOKED_ISSUER", "https://a,https://b")
	t.Setenv("REVOKED_LEEWAY", "3s")
	t.Setenv("REVOKED_GRPC_ADDR", "unix:///run/revoked.sock")
	c, err := ParseSettings([]string{"--grpc-addr", "127.0.0.1:7000"})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://a:4222,nats://b:4222" || c.JWKSURL != "https://idp/jwks" || c.Leeway != 3*time.Second {
		t.Fatalf("environment not applied: %+v", c)
	}
	if len(c.Issuers) != 2 || c.Issuers[1] != "https://b" {
		t.Fatalf("issuers %v", c.Issuers)
	}
	if c.GRPCAddr != "127.0.0.1:7000" {
		t.Fatalf("the command line must win over the environment: %q", c.GRPCAddr)
	}
}

func TestInvalid(t *testing.T) {
	cases := map[string][]string{
		"no keys":             {},
		"both key sources":    {"--jwks-file", "a", "--jwks-url", "b"},
		"bad stale policy":    {"--jwks-file", "a", "--stale-policy", "maybe"},
		"huge leeway":         {"--jwks-file", "a", "--leeway", "1h"},
		"two nats auths":      {"--jwks-file", "a", "--nats-token", "t", "--nats-user", "u"},
		"half a client cert":  {"--jwks-file", "a", "--nats-tls-cert", "c.pem"},
		"upper-case header":   {"--jwks-file", "a", "--subject-header", "X-Sub"},
		"negative cache size": {"--jwks-file", "a", "--token-cache-size", "-1"},
		"stray argument":      {"--jwks-file", "a", "extra"},
		"unknown flag":        {"--jwks-file", "a", "--no-such-flag"},
		"bad log level":       {"--jwks-file", "a", "--log-level", "nope"},
	}
	for name, args := range cases {
		if _, err := ParseSettings(args); err == nil {
			t.Errorf("%s: accepted %v", name, args)
		}
	}
}

// Snapshots are signed: a bucket without the key to check them is refused, saying why.
func TestSnapshotNeedsPublicKey(t *testing.T) {
	_, err := ParseSettings([]string{"--jwks-file", "a", "--snapshot-bucket", "b"})
	if err == nil || !strings.Contains(err.Error(), "--snapshot-bucket needs --snapshot-public-key") || !strings.Contains(err.Error(), "skip every revocation") {
		t.Fatalf("bucket without a key: %v", err)
	}
	if _, err := ParseSettings([]string{"--jwks-file", "a", "--snapshot-public-key", "k.pub"}); err == nil {
		t.Fatal("a public key without a bucket accepted")
	}
	c, err := ParseSettings([]string{"--jwks-file", "a", "--snapshot-bucket", "b", "--snapshot-public-key", "k.pub"})
	if err != nil || c.SnapshotPublicKey != "k.pub" {
		t.Fatalf("bucket and key: %v", err)
	}
	t.Setenv("REVOKED_SNAPSHOT_PUBLIC_KEY", "env.pub")
	if c, err := ParseSettings([]string{"--jwks-file", "a", "--snapshot-bucket", "b"}); err != nil || c.SnapshotPublicKey != "env.pub" {
		t.Fatalf("REVOKED_SNAPSHOT_PUBLIC_KEY: %v", err)
	}
}
