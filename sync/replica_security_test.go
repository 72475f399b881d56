package sync_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
	revsync "github.com/revoked-dev/revoked/sync"
)

// replicaPublish is what a replica may publish for stream REVOCATIONS and snapshot
// bucket SNAP, as docs/nats-permissions.md lists it.
var replicaPublish = []string{
	"$JS.API.STREAM.INFO.REVOCATIONS",
	"$JS.API.CONSUMER.CREATE.REVOCATIONS.>",
	"$JS.API.CONSUMER.DELETE.REVOCATIONS.>",
	"$JS.API.CONSUMER.INFO.REVOCATIONS.>",
	"$JS.API.CONSUMER.MSG.NEXT.REVOCATIONS.>",
	// Reading the snapshot object (--snapshot-bucket SNAP).
	"$JS.API.STREAM.INFO.OBJ_SNAP",
	"$JS.API.DIRECT.GET.OBJ_SNAP.>",
	"$JS.API.CONSUMER.CREATE.OBJ_SNAP.>",
	"$JS.API.CONSUMER.DELETE.OBJ_SNAP.>",
	"$JS.FC.OBJ_SNAP.>",
}

// A replica that loads a snapshot from an Object Store bucket, then replays the rest
// of the stream, needs only read rights on the bucket's stream: it runs as a user with
// exactly the documented rights, loads the snapshot, applies every event, and hits no
// permissions violation.
func TestSecuritySnapshotPermissions(t *testing.T) {
	srv, admin := restrictedNATS(t, "replica", replicaPublish)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp := time.Now().Add(time.Hour).Unix()
	var last uint64
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			ack, err := admin.Publish(ctx, "revocations.jti", []byte(fmt.Sprintf(`{"type":"jti","jti":"j%d","exp":%d}`, i, exp)))
			if err != nil {
				t.Fatal(err)
			}
			last = ack.Sequence
		}
	}
	publish(0, 100)
	snap, err := revsync.BuildSnapshot(ctx, admin, revsync.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	priv, pub := snapshotKeyPair(t)
	if err := revsync.WriteSnapshot(ctx, admin, "SNAP", snap, priv); err != nil {
		t.Fatal(err)
	}
	publish(100, 150)

	var violations []string
	var mu gosync.Mutex
	nc, err := nats.Connect(srv.URL(), nats.UserInfo("replica", "replica-pw"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, err.Error())
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	logs := &testsupport.LogBuffer{}
	set := blocklist.New()
	r, err := revsync.New(nc, set, revsync.Options{SnapshotBucket: "SNAP", SnapshotPublicKeys: []ed25519.PublicKey{pub},
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	runReplica(t, r)
	deadline := time.Now().Add(20 * time.Second)
	for r.LastSequence() < last {
		if time.Now().After(deadline) {
			t.Fatalf("replica at %d of %d; log:\n%s", r.LastSequence(), last, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "snapshot loaded") {
		t.Errorf("snapshot not loaded; log:\n%s", logs.String())
	}
	if jti, _ := set.Len(); jti != 150 {
		t.Errorf("%d jti entries, want 150", jti)
	}
	mu.Lock()
	for _, v := range violations {
		t.Errorf("async error: %s", v)
	}
	mu.Unlock()

	// The sidecars' user only reads the bucket: it cannot put a snapshot there (if it
	// could, every app pod, which holds these credentials, could write one).
	forger, err := nats.Connect(srv.URL(), nats.UserInfo("replica", "replica-pw"),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(forger.Close)
	fjs, _ := jetstream.New(forger)
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	defer wcancel()
	if err := revsync.WriteSnapshot(wctx, fjs, "SNAP", &revsync.Snapshot{Stream: "REVOCATIONS", Subjects: "revocations.>",
		Created: snap.Created, Sequence: last}, priv); err == nil {
		t.Fatal("the sidecars' NATS user wrote a snapshot")
	}
	got, err := revsync.ReadSnapshot(ctx, admin, "SNAP", "REVOCATIONS", []ed25519.PublicKey{pub})
	if err != nil || got.Sequence != snap.Sequence || len(got.JTI) != 100 {
		t.Fatalf("the bucket's snapshot changed: %v", err)
	}
}

// snapshotJobPublish is what the snapshot job may publish for stream REVOCATIONS and
// bucket SNAP, as docs/nats-permissions.md lists it: read the stream, write the bucket.
// Without any one of them but the two marked, the test fails.
var snapshotJobPublish = []string{
	"$JS.API.STREAM.INFO.REVOCATIONS",
	"$JS.API.CONSUMER.CREATE.REVOCATIONS.>",
	"$JS.API.CONSUMER.DELETE.REVOCATIONS.>", // the ordered consumer's cleanup
	"$JS.API.CONSUMER.INFO.REVOCATIONS.>",   // and its resets
	"$JS.API.CONSUMER.MSG.NEXT.REVOCATIONS.>",
	"$JS.API.STREAM.CREATE.OBJ_SNAP",
	"$JS.API.STREAM.UPDATE.OBJ_SNAP",
	"$JS.API.STREAM.PURGE.OBJ_SNAP",
	"$JS.API.DIRECT.GET.OBJ_SNAP.>",
	"$O.SNAP.>",
}

// The snapshot job needs only the documented rights: it builds and writes a snapshot
// twice (creating the bucket, then replacing the object), with no permissions violation,
// and the snapshot verifies. It cannot publish a revocation.
func TestSecuritySnapshotJobPermissions(t *testing.T) {
	srv, admin := restrictedNATS(t, "job", snapshotJobPublish)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var violations []string
	var mu gosync.Mutex
	nc, err := nats.Connect(srv.URL(), nats.UserInfo("job", "job-pw"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, err.Error())
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub := snapshotKeyPair(t)
	exp := time.Now().Add(time.Hour).Unix()
	for round := range 2 {
		for i := range 20 {
			if _, err := admin.Publish(ctx, "revocations.jti", []byte(fmt.Sprintf(`{"type":"jti","jti":"r%d-%d","exp":%d}`, round, i, exp))); err != nil {
				t.Fatal(err)
			}
		}
		snap, err := revsync.BuildSnapshot(ctx, js, revsync.Options{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := revsync.WriteSnapshot(ctx, js, "SNAP", snap, priv); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		got, err := revsync.ReadSnapshot(ctx, admin, "SNAP", "REVOCATIONS", []ed25519.PublicKey{pub})
		if err != nil || len(got.JTI) != 20*(round+1) {
			t.Fatalf("round %d: snapshot read back: %v", round, err)
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	if _, err := js.Publish(pctx, "revocations.jti", []byte(`{"type":"jti","jti":"x","exp":1}`)); err == nil {
		t.Error("the snapshot job published a revocation")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		if !strings.Contains(v, `"revocations.jti"`) {
			t.Errorf("async error: %s", v)
		}
	}
}

func snapshotKeyPair(t *testing.T) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	privPEM, pubPEM, err := revsync.GenerateSnapshotKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := revsync.ParseSnapshotSigningKey(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := revsync.ParseSnapshotPublicKeys(pubPEM)
	if err != nil || len(pubs) != 1 || !pubs[0].Equal(priv.Public()) {
		t.Fatalf("public key %v (%v)", pubs, err)
	}
	return priv, pubs[0]
}

// restrictedNATS runs a server with an admin user and user (password user+"-pw") allowed
// to publish only on publish, and creates the stream as the admin.
func restrictedNATS(t *testing.T, user string, publish []string) (*testsupport.NATS, jetstream.JetStream) {
	t.Helper()
	opts := testsupport.NATSOptions(t)
	opts.Users = []*server.User{
		{Username: "admin", Password: "admin-pw"},
		{Username: user, Password: user + "-pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: publish},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		}},
	}
	srv := testsupport.StartNATSWith(t, opts)
	admin, err := jetstream.New(srv.Connect(nats.UserInfo("admin", "admin-pw")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := stream.Ensure(ctx, admin, stream.Settings{}); err != nil {
		t.Fatal(err)
	}
	return srv, admin
}
