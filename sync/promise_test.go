package sync

// Regression tests for the operations of issue 9 that broke the promise silently: each
// fails on b85a661 and passes with the supervisor of replica.go.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// fast makes the supervisor act within a test's patience.
var fast = Options{CheckEvery: 100 * time.Millisecond, StallAfter: 600 * time.Millisecond, PurgeEvery: 200 * time.Millisecond}

func (f *fixture) revoked(jti string) bool { return f.set.HasJTI(f.set.JTIKey("https://idp", jti)) }

func (f *fixture) streamHandle(t *testing.T) jetstream.Stream {
	t.Helper()
	st, err := f.js.Stream(context.Background(), stream.Config(stream.Settings{}).Name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (f *fixture) consumers(t *testing.T) int {
	t.Helper()
	n := 0
	for range f.streamHandle(t).ConsumerNames(context.Background()).Name() {
		n++
	}
	return n
}

// Row 1: the stream is deleted and created again while a replica follows it. The new
// stream's sequences start again at 1; a replica resuming at its old sequence + 1 would
// never see its events, while staying ready.
func TestStreamRecreatedIsReplayed(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.publish(t, "revocations.jti", jtiEvent(fmt.Sprint("old-", i)), "")
	}
	f.startWith(t, fast)
	testsupport.Until(t, 5*time.Second, "caught up", func() bool { return f.r.Ready() && f.r.LastSequence() == 5 })

	f.recreateStream(t)
	// Fewer events than before (sequence 1 and 2), then more than before: both must arrive.
	f.publish(t, "revocations.jti", jtiEvent("new-1"), "")
	f.publish(t, "revocations.jti", jtiEvent("new-2"), "")
	testsupport.Until(t, 5*time.Second, "the new stream's events applied", func() bool { return f.revoked("new-1") && f.revoked("new-2") })
	for i := range 10 {
		f.publish(t, "revocations.jti", jtiEvent(fmt.Sprint("later-", i)), "")
	}
	testsupport.Until(t, 5*time.Second, "ready and current on the new stream", func() bool {
		return f.r.Ready() && f.r.LastSequence() == 12 && f.r.Staleness(time.Now()) == 0
	})
	for i := range 10 {
		if !f.revoked(fmt.Sprint("later-", i)) {
			t.Fatalf("later-%d not applied", i)
		}
	}
	if !f.revoked("old-0") {
		t.Fatal("entries of the old stream were dropped: revocation only grows")
	}
	if n := testutil.ToFloat64(f.r.resets); n != 1 {
		t.Fatalf("revoked_sync_stream_resets_total = %v, want 1", n)
	}
}

// Row 1, while the stream is gone: the replica says it no longer follows.
func TestStreamDeletedIsStale(t *testing.T) {
	f := newFixture(t)
	f.startWith(t, fast)
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)
	if err := f.js.DeleteStream(context.Background(), "REVOCATIONS"); err != nil {
		t.Fatal(err)
	}
	testsupport.Until(t, 5*time.Second, "staleness while the stream is gone", func() bool { return f.r.Staleness(time.Now()) > 300*time.Millisecond })
}

// Row 2: the last message is deleted (nats stream rmm), so the stream's last sequence
// is ahead of its last message. A replica started afterwards must be ready and stay
// current, without recreating its consumer over and over.
func TestDeletedLastMessage(t *testing.T) {
	f := newFixture(t)
	for i := range 3 {
		f.publish(t, "revocations.jti", jtiEvent(fmt.Sprint("j-", i)), "")
	}
	if err := f.streamHandle(t).DeleteMsg(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	f.startWith(t, fast)
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)
	// Several StallAfter periods while idle.
	for end := time.Now().Add(4 * fast.StallAfter); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if s := f.r.Staleness(time.Now()); s != 0 {
			t.Fatalf("staleness %v while current with the stream", s)
		}
		if !f.r.Ready() {
			t.Fatal("not ready while current with the stream")
		}
	}
	if n := f.consumers(t); n != 1 {
		t.Fatalf("%d consumers on the stream, want 1 (replaced consumers linger)", n)
	}
	f.publish(t, "revocations.jti", jtiEvent("after"), "")
	testsupport.Until(t, 5*time.Second, "an event after the deleted one applied", func() bool { return f.revoked("after") })
}

// Row 10: an empty stream on which no consumer can be created. The replica must not
// say it is ready (it follows nothing), and the failure counts as staleness.
func TestEmptyStreamNeedsAConsumer(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cfg := stream.Config(stream.Settings{})
	cfg.MaxConsumers = 1
	st, err := f.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "blocker", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	f.startWith(t, fast)
	time.Sleep(time.Second)
	if f.r.Ready() {
		t.Fatal("ready without a consumer")
	}
	if s := f.r.Staleness(time.Now()); s < 500*time.Millisecond {
		t.Fatalf("staleness %v while no consumer can be created", s)
	}
	if err := st.DeleteConsumer(ctx, "blocker"); err != nil {
		t.Fatal(err)
	}
	testsupport.Until(t, 5*time.Second, "ready once the consumer exists", func() bool { return f.r.Ready() && f.r.Staleness(time.Now()) == 0 })
}

// Row 9: a cutoff whose not_before lies far in the future would lock a user out for
// ever on running replicas, but not on replicas started once the event has left the
// stream. It is enforced from no later than a minute after the stream stored it.
func TestFarFutureCutoffIsBounded(t *testing.T) {
	f := newFixture(t)
	f.startWith(t, fast)
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)
	before := time.Now().Unix()
	f.publish(t, "revocations.cutoff", `{"type":"cutoff","claim":"sub","value":"u1","not_before":4294967295,"iss":"https://idp"}`, "")
	k := f.set.CutoffKey("https://idp", "sub", "u1")
	testsupport.Until(t, 5*time.Second, "cutoff applied", func() bool { _, ok := f.set.Cutoff(k); return ok })
	nb, _ := f.set.Cutoff(k)
	ahead := int64(stream.CutoffAhead / time.Second)
	if nb < before+ahead || nb > time.Now().Unix()+ahead {
		t.Fatalf("not_before %d, want the store time + %ds (between %d and now)", nb, ahead, before+ahead)
	}
	if n := testutil.ToFloat64(f.r.clamped.WithLabelValues("not_before")); n != 1 {
		t.Fatalf("clamped{not_before} = %v, want 1", n)
	}
}

// Row 9: a flood of distinct events. The replica keeps at most MaxEntries, says it is
// not ready (it can no longer deny every revoked token), counts what it dropped, and
// once purging has made room replays the stream and is ready again.
func TestReplicaFull(t *testing.T) {
	f := newFixture(t)
	opts := fast
	opts.MaxEntries = 100
	f.startWith(t, opts)
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)
	// 150 entries that expire in 2 s, then one that lives.
	exp := time.Now().Add(2 * time.Second).Unix()
	for i := range 150 {
		f.publish(t, "revocations.jti", fmt.Sprintf(`{"type":"jti","jti":"flood-%d","exp":%d,"iss":"https://idp"}`, i, exp), "")
	}
	testsupport.Until(t, 5*time.Second, "replica full, not ready", func() bool { return !f.r.Ready() && f.r.LastSequence() == 150 })
	if got := rejectedCount(f, "replica_full"); got != 50 {
		t.Fatalf("rejected{replica_full} = %v, want 50", got)
	}
	if !strings.Contains(f.r.NotReadyReason(), "full") {
		t.Fatalf("NotReadyReason %q", f.r.NotReadyReason())
	}
	f.publish(t, "revocations.jti", jtiEvent("keeper"), "")
	// The flood expires and is purged; the replay finds "keeper", dropped while full.
	testsupport.Until(t, 10*time.Second, "ready again with the dropped entry", func() bool { return f.r.Ready() && f.revoked("keeper") })
	if n := testutil.ToFloat64(f.r.resets); n != 1 {
		t.Fatalf("resets = %v, want 1", n)
	}
}

func rejectedCount(f *fixture, reason string) float64 {
	return testutil.ToFloat64(f.r.rejected.WithLabelValues(reason))
}

// A stream keeping events for less than a token lives: replicas started later would
// miss revocations of live tokens. Not ready until the stream is fixed.
func TestStreamWindowTooShort(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cfg := stream.Config(stream.Settings{})
	cfg.MaxAge = time.Hour
	if _, err := f.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	f.startWith(t, fast) // MaxTokenLifetime 24h
	time.Sleep(500 * time.Millisecond)
	if f.r.Ready() || !strings.Contains(f.r.NotReadyReason(), "MaxAge") {
		t.Fatalf("ready=%v (%q) with a 1h stream and 24h tokens", f.r.Ready(), f.r.NotReadyReason())
	}
	if _, err := stream.Ensure(ctx, f.js, stream.Settings{}); err != nil {
		t.Fatal(err)
	}
	testsupport.Until(t, 5*time.Second, "ready once the stream keeps events long enough", f.r.Ready)
}

// Propagation is measured for events applied live, never for the replay at start.
func TestPropagationMetric(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.publish(t, "revocations.jti", jtiEvent(fmt.Sprint("replayed-", i)), "")
	}
	f.startWith(t, fast)
	testsupport.Until(t, 5*time.Second, "ready", func() bool { return f.r.Ready() && f.r.LastSequence() == 5 })
	for i := range 3 {
		f.publish(t, "revocations.jti", jtiEvent(fmt.Sprint("live-", i)), "")
	}
	testsupport.Until(t, 5*time.Second, "live events applied", func() bool { return f.r.LastSequence() == 8 })
	if n := testutil.CollectAndCount(f.r.propagation); n != 1 {
		t.Fatalf("%d propagation series", n)
	}
	var m dto.Metric
	if err := f.r.propagation.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram().GetSampleCount(); got != 3 {
		t.Fatalf("propagation observed %d events, want the 3 live ones", got)
	}
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "revoked_sync_lag_messages" {
			found = true
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 0 {
				t.Fatalf("lag %v once caught up", v)
			}
		}
	}
	if !found {
		t.Fatal("revoked_sync_lag_messages not registered")
	}
}

// A replica may follow a mirror of the stream (a region's copy): while the mirror has
// lost its origin, the replica is stale, as with a lost NATS connection.
func TestMirrorCutOffIsStale(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "REGION", Storage: jetstream.FileStorage, MaxAge: stream.Config(stream.Settings{}).MaxAge,
		Mirror: &jetstream.StreamSource{Name: "REVOCATIONS"},
	}); err != nil {
		t.Fatal(err)
	}
	f.publish(t, "revocations.jti", jtiEvent("before"), "")
	// A mirror just created reports no contact with its origin for a moment, which a
	// replica started then counts as cut off until its first check: start on one that
	// follows.
	testsupport.Until(t, 5*time.Second, "the mirror in contact with its origin", func() bool {
		st, err := f.js.Stream(ctx, "REGION")
		return err == nil && st.CachedInfo().Mirror != nil && st.CachedInfo().Mirror.Active >= 0
	})
	opts := fast
	opts.Stream = "REGION"
	f.startWith(t, opts)
	testsupport.Until(t, 5*time.Second, "the mirrored event applied", func() bool { return f.r.Ready() && f.revoked("before") })
	f.publish(t, "revocations.jti", jtiEvent("live"), "")
	testsupport.Until(t, 5*time.Second, "a live event through the mirror", func() bool { return f.revoked("live") })
	if s := f.r.Staleness(time.Now()); s != 0 {
		t.Fatalf("staleness %v while the mirror follows", s)
	}
	// The origin goes away: the mirror hears nothing more.
	if err := f.js.DeleteStream(ctx, "REVOCATIONS"); err != nil {
		t.Fatal(err)
	}
	testsupport.Until(t, 15*time.Second, "stale while the mirror is cut off", func() bool { return f.r.Staleness(time.Now()) > 0 })
	if !f.r.Ready() {
		t.Fatal("a replica of a cut-off mirror keeps what it has: ready, and stale")
	}
}

// Row 2, from a snapshot: the last message was deleted before the snapshot was built, so
// the stream's last sequence is past every message and past the snapshot. A replica
// started from it has nothing left to replay: it is ready, and stays current.
func TestSnapshotAtDeletedLastMessage(t *testing.T) {
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	snapPublish(t, js, snapJTI("a"), snapJTI("b"), snapJTI("deleted"))
	st, err := js.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, 3); err != nil {
		t.Fatal(err)
	}
	snap, err := BuildSnapshot(ctx, js, Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshot(ctx, js, "SNAP", snap, testSnapKey); err != nil {
		t.Fatal(err)
	}
	opts := fast
	opts.SnapshotBucket = "SNAP"
	r, set, _, stop := startReplicaWith(t, ns, opts, testSnapPub)
	t.Cleanup(stop)
	if !r.Ready() || testutil.ToFloat64(r.snapshotLoads.WithLabelValues(snapOK)) != 1 {
		t.Fatalf("ready %v (%s) after the snapshot", r.Ready(), r.NotReadyReason())
	}
	for end := time.Now().Add(3 * fast.StallAfter); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if s := r.Staleness(time.Now()); s != 0 || !r.Ready() {
			t.Fatalf("staleness %v, ready %v while current", s, r.Ready())
		}
	}
	if !set.HasJTI(set.JTIKey(snapIss, "b")) {
		t.Fatal("snapshot entry missing")
	}
}

// A stream info request lost once (here: the server's replies dropped for 2.5 s) makes
// the replica stale from its last sign of following, not from when its consumer was
// created: a long-running healthy replica must not report hours of staleness (and, with
// --stale-policy deny, deny every check) for one slow request.
func TestStalenessCountsFromLastContact(t *testing.T) {
	f := newFixture(t)
	proxy := testsupport.StartProxy(t, f.srv.Addr().String())
	nc, err := nats.Connect(proxy.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	opts := fast
	opts.Registerer = f.reg
	if f.r, err = New(nc, f.set, opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = f.r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)
	time.Sleep(5 * time.Second) // healthy for a while
	proxy.DropReplies(true)
	var worst time.Duration
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		worst = max(worst, f.r.Staleness(time.Now()))
	}
	proxy.DropReplies(false)
	if worst > 4*time.Second {
		t.Fatalf("staleness reached %v within 2.5 s of lost replies", worst)
	}
	testsupport.Until(t, 10*time.Second, "following again", func() bool { return f.r.Staleness(time.Now()) == 0 })
}
