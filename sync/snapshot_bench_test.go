package sync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/revoked-dev/revoked/bench/benchkit"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testnats"
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

// snapReplica runs a replica with the snapshot bucket until ready and returns it; it
// stops when the test ends.
func snapReplica(t testing.TB, ns *testnats.Server, bucket string) (*Replica, *blocklist.Set, *prometheus.Registry) {
	t.Helper()
	r, set, reg, stop := startSnapReplica(t, ns, bucket)
	t.Cleanup(stop)
	return r, set, reg
}

func startSnapReplica(t testing.TB, ns *testnats.Server, bucket string) (*Replica, *blocklist.Set, *prometheus.Registry, func()) {
	t.Helper()
	set, reg := blocklist.New(), prometheus.NewRegistry()
	r, err := New(ns.Connect(nats.MaxReconnects(-1)), set, Options{Registerer: reg, SnapshotBucket: bucket})
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

func TestSnapshotNoLoss(t *testing.T) {
	ns := testnats.Start(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	now := time.Now()

	var before []string
	for i := range 200 {
		before = append(before, snapJTI(fmt.Sprint("before-", i)))
	}
	before = append(before, snapCutoff("user-1", now.Unix()-60), snapCutoff("user-1", now.Unix()-10))
	// Already past use when the snapshot is built: left out.
	before = append(before, fmt.Sprintf(`{"type":"jti","jti":"gone","exp":%d}`, now.Unix()-3600))
	seq := snapPublish(t, js, before...)

	snap, err := BuildSnapshot(ctx, js, Options{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Sequence != seq || len(snap.JTI) != 200 || len(snap.Cutoffs) != 1 || snap.Cutoffs[0].NotBefore != now.Unix()-10 {
		t.Fatalf("snapshot: sequence %d (want %d), %d jti (want 200), cutoffs %+v", snap.Sequence, seq, len(snap.JTI), snap.Cutoffs)
	}
	if err := WriteSnapshot(ctx, js, "REVOKED_SNAPSHOTS", snap); err != nil {
		t.Fatal(err)
	}
	// Events after the snapshot: only the stream has them.
	var after []string
	for i := range 50 {
		after = append(after, snapJTI(fmt.Sprint("after-", i)))
	}
	last := snapPublish(t, js, after...)

	r, set, reg := snapReplica(t, ns, "REVOKED_SNAPSHOTS")
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
	// The stream was replayed from the snapshot's sequence on, not from the start.
	if n := testutil.ToFloat64(r.appliedJTI); n != 50 {
		t.Fatalf("%v jti events applied from the stream, want 50", n)
	}
	if v := testutil.ToFloat64(r.applied.WithLabelValues("jti")); v != 50 || reg == nil {
		t.Fatalf("applied_total{type=jti} = %v, want 50", v)
	}
	// And live events keep coming.
	snapPublish(t, js, snapJTI("live"))
	snapWait(t, "the live event", func() bool { return set.HasJTI(set.JTIKey(snapIss, "live")) })
}

func TestSnapshotOfAnotherStreamIsIgnored(t *testing.T) {
	ns := testnats.Start(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	snapPublish(t, js, snapJTI("old-1"), snapJTI("old-2"), snapJTI("old-3"))
	snap, err := BuildSnapshot(ctx, js, Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshot(ctx, js, "SNAPS", snap); err != nil {
		t.Fatal(err)
	}
	// The stream is deleted and created again: the snapshot is of another incarnation.
	if err := js.DeleteStream(ctx, event.DefaultStream); err != nil {
		t.Fatal(err)
	}
	js = ns.CreateStream(stream.Settings{})
	last := snapPublish(t, js, snapJTI("new-1"))
	r, set, _ := snapReplica(t, ns, "SNAPS")
	snapWait(t, "the replica to reach the stream's end", func() bool { return r.LastSequence() == last })
	if set.HasJTI(set.JTIKey(snapIss, "old-1")) || !set.HasJTI(set.JTIKey(snapIss, "new-1")) {
		t.Fatal("the snapshot of the deleted stream was used")
	}
}

func TestSnapshotMissingOrCorrupt(t *testing.T) {
	ns := testnats.Start(t)
	js := ns.CreateStream(stream.Settings{})
	last := snapPublish(t, js, snapJTI("a"), snapJTI("b"))
	obs, err := js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: "BAD"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutString(context.Background(), event.DefaultStream, "REVSNAP1 truncated"); err != nil {
		t.Fatal(err)
	}
	// A real snapshot cut short: entries are applied as read, then the replica sees the
	// object is bad and replays the whole stream.
	snap, err := BuildSnapshot(context.Background(), js, Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := snap.MarshalBinary()
	cut, err := js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: "CUT"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cut.PutBytes(context.Background(), event.DefaultStream, whole[:len(whole)-3]); err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{"NONE", "BAD", "CUT"} {
		r, set, _ := snapReplica(t, ns, bucket)
		snapWait(t, "the replica to reach the stream's end", func() bool { return r.LastSequence() == last })
		if !set.HasJTI(set.JTIKey(snapIss, "a")) || !set.HasJTI(set.JTIKey(snapIss, "b")) {
			t.Fatalf("bucket %s: events missing after a full replay", bucket)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := &Snapshot{Stream: "S", Created: time.Unix(0, 1234567890123), Sequence: 42,
		JTI:     []SnapshotJTI{{Iss: "i", JTI: "j", Exp: 99}, {JTI: "k", Exp: 1 << 40}},
		Cutoffs: []SnapshotCutoff{{Iss: "i", Claim: "sub", Value: "u", NotBefore: 7}}}
	b, _ := s.MarshalBinary()
	var got Snapshot
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(*s) || !got.Created.Equal(s.Created) {
		t.Fatalf("round trip: %+v, want %+v", got, *s)
	}
	for i := range b {
		if err := new(Snapshot).UnmarshalBinary(b[:i]); err == nil {
			t.Fatalf("truncated at %d: no error", i)
		}
	}
}

// BenchmarkColdStartSnapshot is a replica's start over n events: all replayed from the
// stream, or loaded from a snapshot taken at the stream's end.
func BenchmarkColdStartSnapshot(b *testing.B) {
	const n = 100_000
	ns := testnats.Start(b)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	if _, err := benchkit.PublishAll(ctx, js, event.Subject(event.DefaultSubjectPrefix, event.TypeJTI), benchEvents(n), 1000); err != nil {
		b.Fatal(err)
	}
	snap, err := BuildSnapshot(ctx, js, Options{}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	if err := WriteSnapshot(ctx, js, "SNAPS", snap); err != nil {
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
