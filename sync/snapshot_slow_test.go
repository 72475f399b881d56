package sync

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"

	"github.com/prometheus/client_golang/prometheus"
)

// TestSlowSnapshotReadIsNotCutShort: a snapshot that keeps coming, only slowly (a slow
// or far link, a fleet of replicas reading at once), is loaded however long it takes.
// nats.go bounds an object read by its default 5 s timeout when the context has no
// deadline; every replica of a fleet of 200 started together here fell back to a full
// replay that way (bench/fleet: "chunk 1: nats: timeout"), 7x the bytes of the snapshot,
// just when the server was busiest. Stalls are the stall guard's to end, not a clock.
func TestSlowSnapshotReadIsNotCutShort(t *testing.T) {
	if testing.Short() {
		t.Skip("reads a snapshot for about 7 s")
	}
	const n = 20_000
	proxy, last, size := snapshotBehindProxy(t, n)
	// The link brings the object in about 7 s: past nats.go's 5 s, inside the stall
	// guard's 10 s between chunks (a chunk every half second or so).
	proxy.Throttle(size / 7)
	r, set := replicaVia(t, proxy)

	start := time.Now()
	for snapLoads(r, snapOK)+snapLoads(r, snapMalformed)+snapLoads(r, snapError) == 0 {
		if time.Since(start) > time.Minute {
			t.Fatal("the snapshot load never ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	proxy.Throttle(0) // whatever comes next (a replay) at full speed
	if ok := snapLoads(r, snapOK); ok != 1 {
		t.Fatalf("a snapshot read over %.1fs was not used (malformed %v, error %v): a full replay instead", took.Seconds(),
			snapLoads(r, snapMalformed), snapLoads(r, snapError))
	}
	if took < 5*time.Second {
		t.Fatalf("the read took %.1fs, under nats.go's 5 s: the throttle did not slow it", took.Seconds())
	}
	caughtUp(t, r, set, last, n)
}

// TestStalledSnapshotReadIsGivenUp: a read whose chunks stop coming (the link silent,
// the connection still up) is given up by the stall guard, and the replica replays
// once the link is back. nats.go's object reader holds its lock through a blocked read,
// so closing it from the guard waited for the read's deadline: the explorer found a
// replica not ready for minutes that way once the read had a far deadline.
func TestStalledSnapshotReadIsGivenUp(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the stall guard (10 s)")
	}
	const n = 60_000
	proxy, last, _ := snapshotBehindProxy(t, n)
	proxy.Throttle(64 << 10) // the read takes many seconds: time to stall it part-way
	r, set := replicaVia(t, proxy)

	time.Sleep(1500 * time.Millisecond)
	proxy.DropReplies(true) // the chunks stop; the connection stays up
	stalled := time.Now()
	given := func() float64 { return snapLoads(r, snapMalformed) + snapLoads(r, snapError) }
	for given() == 0 {
		if snapLoads(r, snapOK) != 0 {
			t.Fatal("the snapshot loaded before the stall: slow the link further")
		}
		// The guard's bound and some slack: well before the read's own deadline
		// (10 s + the size at snapshotMinRate, about 22 s here).
		if time.Since(stalled) > snapshotRequestTimeout+4*time.Second {
			t.Fatalf("a snapshot read stalled %.0fs ago is still not given up (guard: %s)", time.Since(stalled).Seconds(), snapshotRequestTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("given up %.1fs after the stall", time.Since(stalled).Seconds())
	proxy.DropReplies(false)
	proxy.Throttle(0)
	proxy.Partition() // what the dropped bytes left of the protocol is garbage: reconnect
	proxy.Heal()
	caughtUp(t, r, set, last, n)
	// The abandoned copy ends by the read's deadline at the latest.
	testsupport.Until(t, time.Minute, "the abandoned snapshot read to end", func() bool { return detachedReads.Load() == 0 })
}

// snapshotBehindProxy publishes n jti events, writes their snapshot to bucket SNAPS,
// and returns a proxy to the server, the stream's last sequence and the snapshot's size.
func snapshotBehindProxy(t *testing.T, n int) (proxy *testsupport.Proxy, last uint64, size int64) {
	t.Helper()
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	evs := make([]string, n)
	for i := range evs {
		evs[i] = snapJTI(fmt.Sprintf("ev-%06d-%s", i, "7f3c9a1b2c3d4e5f7f3c9a1b"))
	}
	last = snapPublish(t, js, evs...)
	snap, err := BuildSnapshot(ctx, js, Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshot(ctx, js, "SNAPS", snap, testSnapKey); err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, "SNAPS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	return testsupport.StartProxy(t, ns.Server.Addr().String()), last, int64(info.Size)
}

// replicaVia runs a replica loading SNAPS through proxy; it stops when the test ends.
func replicaVia(t *testing.T, proxy *testsupport.Proxy) (*Replica, *blocklist.Set) {
	t.Helper()
	nc, err := nats.Connect(proxy.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	set := blocklist.New()
	r, err := New(nc, set, Options{SnapshotBucket: "SNAPS", SnapshotPublicKeys: []ed25519.PublicKey{testSnapPub}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; nc.Close() })
	return r, set
}

// caughtUp waits for r to be ready and checks it holds the stream: at sequence last,
// with n jti entries.
func caughtUp(t *testing.T, r *Replica, set *blocklist.Set, last uint64, n int) {
	t.Helper()
	select {
	case <-r.ReadyC():
	case <-time.After(60 * time.Second):
		t.Fatal("never ready")
	}
	if r.LastSequence() != last {
		t.Fatalf("at sequence %d, want %d", r.LastSequence(), last)
	}
	if jti, _ := set.Len(); jti != n {
		t.Fatalf("%d entries, want %d", jti, n)
	}
}
