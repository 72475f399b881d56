package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/config"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/logbuf"
	"github.com/revoked-dev/revoked/internal/sidecar"
	"github.com/revoked-dev/revoked/internal/testnats"
)

// A sidecar started from a snapshot enforces the events before it (from the snapshot)
// and after it (replayed from the stream), and not only those: nothing is lost.
func TestSnapshotColdStart(t *testing.T) {
	const iss, aud = "https://idp.example.com", "orders-api"
	ns := testnats.Start(t)
	natsFlag := "--nats-url=" + ns.URL()
	cli(t, "", "stream", "init", natsFlag).want(t, exitOK)
	issuer, err := devissuer.New("EdDSA", iss, aud)
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}

	var before, after []string
	for i := 0; i < 20; i++ {
		before = append(before, issuer.Token(fmt.Sprint("early-", i), time.Hour, nil))
	}
	for _, tok := range before[:10] {
		cli(t, "", "revoke", "token", tok, natsFlag).want(t, exitOK)
	}
	cli(t, "", "revoke", "sub", "early-15", natsFlag, "--not-before", time.Now().Add(2*time.Second).UTC().Format(time.RFC3339)).want(t, exitOK)
	r := cli(t, "", "snapshot", natsFlag).want(t, exitOK)
	if !strings.Contains(r.stdout, "sequence 11") || !strings.Contains(r.stdout, "10 jti entries, 1 cutoffs") {
		t.Fatalf("snapshot printed %q", r.stdout)
	}
	for i := 0; i < 5; i++ {
		tok := issuer.Token(fmt.Sprint("late-", i), time.Hour, jwt.MapClaims{})
		after = append(after, tok)
		cli(t, "", "revoke", "token", tok, natsFlag).want(t, exitOK)
	}

	cfg, err := config.Parse("revoked", []string{
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--admin-addr", "127.0.0.1:0",
		"--nats-url", ns.URL(), "--jwks-file", jwks, "--issuer", iss, "--audience", aud,
		"--snapshot-bucket", DefaultSnapshotBucket,
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs logbuf.Buffer
	sc, err := sidecar.Start(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.Close)
	poll(t, "sidecar ready", sc.Ready)
	if got := sc.Replica.LastSequence(); got != 16 {
		t.Fatalf("last sequence %d, want 16", got)
	}
	if !strings.Contains(logs.String(), `"msg":"snapshot loaded","sequence":11`) {
		t.Fatalf("the sidecar did not start from the snapshot:\n%s", logs.String())
	}
	for i, tok := range before {
		d := sc.Authorizer.Decide("Bearer "+tok, time.Now())
		revoked := i < 10 || i == 15
		if d.Allowed() == revoked {
			t.Errorf("early-%d: %v, revoked %v", i, d.Reason, revoked)
		}
	}
	for i, tok := range after {
		if d := sc.Authorizer.Decide("Bearer "+tok, time.Now()); d.Allowed() {
			t.Errorf("late-%d, revoked after the snapshot, allowed", i)
		}
	}
}
