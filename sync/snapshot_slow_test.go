package sync

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoked-dev/revoked/blocklist"
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
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	var evs []string
	for i := range 20_000 {
		evs = append(evs, snapJTI(fmt.Sprintf("slow-%06d-%s", i, "7f3c9a1b2c3d4e5f7f3c9a1b")))
	}
	last := snapPublish(t, js, evs...)
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
	info, err := obs.GetInfo(ctx, "REVOCATIONS")
	if err != nil {
		t.Fatal(err)
	}

	// The link brings the object in about 7 s: past nats.go's 5 s, inside the stall
	// guard's 10 s between chunks (a chunk every half second or so).
	proxy := testsupport.StartProxy(t, ns.Server.Addr().String())
	rate := int64(info.Size) / 7
	nc, err := nats.Connect(proxy.URL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	proxy.Throttle(rate)
	set := blocklist.New()
	r, err := New(nc, set, Options{SnapshotBucket: "SNAPS", SnapshotPublicKeys: []ed25519.PublicKey{testSnapPub}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = r.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

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
		t.Logf("the read took %.1fs, under nats.go's 5 s: this run did not test the point", took.Seconds())
	}
	select {
	case <-r.ReadyC():
	case <-time.After(30 * time.Second):
		t.Fatal("never ready")
	}
	if r.LastSequence() != last {
		t.Fatalf("at sequence %d, want %d", r.LastSequence(), last)
	}
	if jti, _ := set.Len(); jti != len(evs) {
		t.Fatalf("%d entries, want %d", jti, len(evs))
	}
}
