package sync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/revoked-dev/revoked/bench/benchkit"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// The snapshot's no-loss guarantee, against a real (embedded) JetStream server, and the
// benchmark of a cold start from a snapshot. The tests wait by polling; none is timed.

const snapIss = "https://idp.example.com"

func snapPublish(t testing.TB, js jetstream.JetStream, payloads ...string) uint64 {
	t.Helper()
	var seq uint64
	for _, p := range payloads {
		ack, err := js.Publish(context.Background(), event.Subject(event.DefaultSubjectPrefix, "jti"), []byte(p))
		if err != nil {
			t.Fatal(err)
		}
		seq = ack.Sequence
	}
	return seq
}

func snapJTI(jti string) string {
	return fmt.Sprintf(`{"type":"jti","jti":%q,"exp":%d,"iss":%q}`, jti, time.Now().Add(time.Hour).Unix(), snapIss)
}

func snapCutoff(value string, nb int64) string {
	return fmt.Sprintf(`{"type":"cutoff","claim":"sub","value":%q,"not_before":%d}`, value, nb)
}

// testSnapKey signs the tests' snapshots; replicas trust testSnapPub.
var (
	testSnapKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	testSnapPub = testSnapKey.Public().(ed25519.PublicKey)
)

// snapReplica runs a replica with the snapshot bucket, trusting testSnapPub, until ready
// and returns it; it stops when the test ends.
func snapReplica(t testing.TB, ns *testsupport.NATS, bucket string) (*Replica, *blocklist.Set, *prometheus.Registry) {
	t.Helper()
	r, set, reg, stop := startSnapReplica(t, ns, bucket)
	t.Cleanup(stop)
	return r, set, reg
}

func startSnapReplica(t testing.TB, ns *testsupport.NATS, bucket string) (*Replica, *blocklist.Set, *prometheus.Registry, func()) {
	t.Helper()
	return startReplicaWith(t, ns, Options{SnapshotBucket: bucket}, testSnapPub)
}

// startReplicaWith runs a replica with opts (a fresh registry unless opts has one) and
// the trusted snapshot keys until it is first caught up.
func startReplicaWith(t testing.TB, ns *testsupport.NATS, opts Options, keys ...ed25519.PublicKey) (*Replica, *blocklist.Set, *prometheus.Registry, func()) {
	t.Helper()
	set, reg := blocklist.New(), prometheus.NewRegistry()
	if opts.Registerer == nil {
		opts.Registerer = reg
	}
	opts.SnapshotPublicKeys = keys
	r, err := New(ns.Connect(nats.MaxReconnects(-1)), set, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	select {
	case <-r.ReadyC():
	case <-time.After(30 * time.Second):
		stop()
		t.Fatal("replica never ready")
	}
	return r, set, reg, stop
}

func snapWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// snapLoads is revoked_snapshot_loads_total{result}.
func snapLoads(r *Replica, result string) float64 {
	return testutil.ToFloat64(r.snapshotLoads.WithLabelValues(result))
}

// A snapshot holds every event before it, even those already past use when it is built
// (the replica that loads it decides); the replica loads it, then replays only the
// events after it.
func TestSnapshotNoLoss(t *testing.T) {
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	now := time.Now()

	var before []string
	for i := range 200 {
		before = append(before, snapJTI(fmt.Sprint("before-", i)))
	}
	before = append(before, snapCutoff("user-1", now.Unix()-60), snapCutoff("user-1", now.Unix()-10))
	// Already past use when the snapshot is built: kept in it, skipped by the replica.
	before = append(before, fmt.Sprintf(`{"type":"jti","jti":"gone","exp":%d}`, now.Unix()-3600))
	seq := snapPublish(t, js, before...)

	snap, err := BuildSnapshot(ctx, js, Options{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Sequence != seq || len(snap.JTI) != 201 || len(snap.Cutoffs) != 1 || snap.Cutoffs[0].NotBefore != now.Unix()-10 {
		t.Fatalf("snapshot: sequence %d (want %d), %d jti (want 201), cutoffs %+v", snap.Sequence, seq, len(snap.JTI), snap.Cutoffs)
	}
	if snap.Events != seq || snap.Skipped != 0 || snap.Subjects != "revocations.>" || !snap.BuiltAt.Equal(now) {
		t.Fatalf("snapshot header: %d events, %d skipped, subjects %q, built at %v", snap.Events, snap.Skipped, snap.Subjects, snap.BuiltAt)
	}
	if err := WriteSnapshot(ctx, js, "REVOKED_SNAPSHOTS", snap, testSnapKey); err != nil {
		t.Fatal(err)
	}
	// The stream loses its first event: only the snapshot has it now, so a replica that
	// has it loaded the snapshot.
	st, err := js.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Events after the snapshot: only the stream has them.
	var after []string
	for i := range 50 {
		after = append(after, snapJTI(fmt.Sprint("after-", i)))
	}
	last := snapPublish(t, js, after...)

	r, set, _ := snapReplica(t, ns, "REVOKED_SNAPSHOTS")
	snapWait(t, "the replica to reach the stream's end", func() bool { return r.LastSequence() == last })
	for i := range 200 {
		if !set.HasJTI(set.JTIKey(snapIss, fmt.Sprint("before-", i))) {
			t.Fatalf("before-%d (in the snapshot) is missing", i)
		}
	}
	for i := range 50 {
		if !set.HasJTI(set.JTIKey(snapIss, fmt.Sprint("after-", i))) {
			t.Fatalf("after-%d (after the snapshot) is missing", i)
		}
	}
	if nb, ok := set.Cutoff(set.CutoffKey("", "sub", "user-1")); !ok || nb != now.Unix()-10 {
		t.Fatalf("cutoff: %d %v", nb, ok)
	}
	if set.HasJTI(set.JTIKey("", "gone")) {
		t.Fatal("an expired entry of the snapshot was kept")
	}
	if n := snapLoads(r, "ok"); n != 1 {
		t.Fatalf("snapshot loads ok = %v, want 1", n)
	}
	// 200 + 1 cutoff from the snapshot, 50 from the stream; the expired one counted.
	if v := testutil.ToFloat64(r.applied.WithLabelValues("jti")); v != 250 {
		t.Fatalf("applied_total{type=jti} = %v, want 250", v)
	}
	if v := testutil.ToFloat64(r.rejected.WithLabelValues("expired")); v != 1 {
		t.Fatalf("rejected_total{reason=expired} = %v, want 1", v)
	}
	// And live events keep coming.
	snapPublish(t, js, snapJTI("live"))
	snapWait(t, "the live event", func() bool { return set.HasJTI(set.JTIKey(snapIss, "live")) })
}

// A missing, unreadable, cut-short or over-long snapshot costs a full replay, never an
// event.
func TestSnapshotMissingOrCorrupt(t *testing.T) {
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	last := snapPublish(t, js, snapJTI("a"), snapJTI("b"))
	snap, err := BuildSnapshot(ctx, js, Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	snap.JTI = snap.JTI[:1] // a snapshot that, used, would lose b
	whole, err := snap.MarshalSigned(testSnapKey)
	if err != nil {
		t.Fatal(err)
	}
	// A signed snapshot of several chunks whose second chunk is damaged: the first
	// chunk's entries are applied (they were signed), then the stream is replayed.
	big := &Snapshot{Stream: snap.Stream, Subjects: snap.Subjects, Created: snap.Created, Sequence: snap.Sequence}
	for i := range 20_000 {
		big.JTI = append(big.JTI, SnapshotJTI{Iss: snapIss, JTI: fmt.Sprintf("filler-%08d", i), Exp: time.Now().Add(time.Hour).Unix()})
	}
	damaged, err := big.MarshalSigned(testSnapKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(damaged) < snapshotChunkSize+4096 {
		t.Fatalf("%d bytes: one chunk", len(damaged))
	}
	damaged[len(damaged)-10] ^= 1
	objects := map[string][]byte{
		"CHUNK2": damaged,
		"BAD":    []byte(snapshotMagic + " truncated"),
		"CUT":    whole[:len(whole)-3],
		"TRAIL":  append(slices.Clone(whole), 0),
		"EMPTY":  nil,
	}
	for bucket, b := range objects {
		obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := obs.PutBytes(ctx, event.DefaultStream, b); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"NONE": "missing", "BAD": "malformed", "CUT": "malformed", "TRAIL": "malformed", "EMPTY": "malformed", "CHUNK2": "malformed"}
	for bucket, result := range want {
		t.Run(bucket, func(t *testing.T) {
			r, set, _ := snapReplica(t, ns, bucket)
			snapWait(t, "the replica to reach the stream's end", func() bool { return r.LastSequence() == last })
			if !set.HasJTI(set.JTIKey(snapIss, "a")) || !set.HasJTI(set.JTIKey(snapIss, "b")) {
				t.Fatalf("bucket %s: events missing after a full replay", bucket)
			}
			if n := snapLoads(r, result); n != 1 {
				t.Fatalf("snapshot loads %s = %v, want 1", result, n)
			}
			if bucket == "CHUNK2" && !set.HasJTI(set.JTIKey(snapIss, "filler-00000000")) {
				t.Fatal("the first chunk, signed and intact, was not applied")
			}
		})
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := &Snapshot{Stream: "S", Subjects: "revocations.>", Created: time.Unix(0, 1234567890123), Sequence: 42,
		BuiltAt: time.Unix(0, 99), Builder: "test", Events: 50, Skipped: 2,
		JTI:     []SnapshotJTI{{Iss: "i", JTI: "j", Exp: 99}, {JTI: "k", Exp: 1 << 31}, {Iss: "i", JTI: "a", Exp: 5}},
		Cutoffs: []SnapshotCutoff{{Iss: "i", Claim: "sub", Value: "u", NotBefore: 7}, {Iss: "i", Claim: "sub", Value: "v", NotBefore: 8}, {Claim: "tenant", Value: "t", NotBefore: 9}}}
	b, err := s.MarshalSigned(testSnapKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSnapshot(b, []ed25519.PublicKey{testSnapPub})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*got) != fmt.Sprint(*s) || !got.Created.Equal(s.Created) {
		t.Fatalf("round trip: %+v, want %+v", *got, *s)
	}
	for i := range b {
		if _, err := ParseSnapshot(b[:i], []ed25519.PublicKey{testSnapPub}); err == nil {
			t.Fatalf("truncated at %d: no error", i)
		}
	}
}

// BenchmarkColdStartSnapshot is a replica's start over n events: all replayed from the
// stream, or loaded from a snapshot taken at the stream's end.
func BenchmarkColdStartSnapshot(b *testing.B) {
	const n = 100_000
	ns := testsupport.StartNATS(b)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	if _, err := benchkit.PublishAll(ctx, js, event.Subject(event.DefaultSubjectPrefix, event.TypeJTI), benchEvents(n), 1000); err != nil {
		b.Fatal(err)
	}
	snap, err := BuildSnapshot(ctx, js, Options{}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	if err := WriteSnapshot(ctx, js, "SNAPS", snap, testSnapKey); err != nil {
		b.Fatal(err)
	}
	for _, bucket := range []string{"", "SNAPS"} {
		name := "replay"
		if bucket != "" {
			name = "snapshot"
		}
		b.Run(name+"/100k", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, set, _, stop := startSnapReplica(b, ns, bucket)
				stop()
				if jti, _ := set.Len(); jti != n {
					b.Fatalf("%d entries, want %d", jti, n)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
