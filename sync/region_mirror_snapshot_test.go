package sync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
)

// A region's snapshot job (revokectl snapshot against the region's NATS) snapshots the
// region's mirror into a bucket in the region, and the region's sidecars start from it:
// they load it (no full replay), replay only what the mirror copied after it, and deny
// every revocation, from before the snapshot and after it. The mirror keeps its origin's
// sequences but is a stream of its own (its own creation time): the snapshot names the
// mirror's incarnation, which is what the region's replica compares it with.
//
// The hub's own snapshot job writes its bucket meanwhile. An Object Store bucket is a
// stream on subjects $O.<bucket>.>, and plain subjects cross the leaf node (only the
// JetStream API is kept apart by the domains): with the same bucket name on both sides,
// each job's writes land in the other's bucket too, and whichever wrote last is the
// snapshot both read. The hub's snapshot is of another stream for the region's replica
// (signed with another key, a bad signature): refused, a full replay at every start,
// nothing missed. The region's bucket needs a name of its own (docs/regions.md).
func TestRegionReplicaStartsFromMirrorSnapshot(t *testing.T) {
	const hubBucket = "revoked-snapshots"
	t.Run("the region's own bucket", func(t *testing.T) {
		r := startRegionFromSnapshot(t, "revoked-snapshots-region-a", hubBucket)
		checkSnapshotLoads(t, r, snapOK)
	})
	t.Run("the hub's bucket name", func(t *testing.T) {
		r := startRegionFromSnapshot(t, hubBucket, hubBucket)
		checkSnapshotLoads(t, r, snapOtherStream)
	})
}

// startRegionFromSnapshot publishes revocations at the hub, snapshots the region's
// mirror into regionBucket, lets the hub's job snapshot the hub's stream into hubBucket,
// publishes more, and starts a replica of the region from regionBucket: ready, caught up
// with the hub and denying every revocation.
func startRegionFromSnapshot(t *testing.T, regionBucket, hubBucket string) *Replica {
	const before, after = 300, 40
	regions, hub, region, mirror := startHubAndMirror(t)
	ctx := context.Background()
	mirrorHolds := func(seq uint64) {
		t.Helper()
		testsupport.Until(t, 10*time.Second, fmt.Sprintf("the mirror at the hub's sequence %d", seq), func() bool {
			info, err := mirror.Info(ctx)
			return err == nil && info.State.LastSeq == seq
		})
	}
	publishJTIs := func(prefix string, n int) uint64 {
		t.Helper()
		var payloads []string
		for i := range n {
			payloads = append(payloads, snapJTI(fmt.Sprint(prefix, i)))
		}
		return snapPublish(t, hub, payloads...)
	}

	hubSeq := publishJTIs("before-", before)
	mirrorHolds(hubSeq)

	// What revokectl snapshot does with --nats-url of the region, the default --stream
	// and --bucket regionBucket.
	snap, err := BuildSnapshot(ctx, region, Options{Stream: event.DefaultStream}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Sequence != hubSeq || len(snap.JTI) != before {
		t.Fatalf("snapshot of the mirror at sequence %d with %d jti entries, want the hub's %d and %d", snap.Sequence, len(snap.JTI), hubSeq, before)
	}
	if err := WriteSnapshot(ctx, region, regionBucket, snap, testSnapKey); err != nil {
		t.Fatal(err)
	}
	regionObs, err := region.ObjectStore(ctx, regionBucket)
	if err != nil {
		t.Fatal(err)
	}
	written, err := regionObs.GetInfo(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}

	// The hub's job, same signing key (one platform), after the region's.
	hubSnap, err := BuildSnapshot(ctx, hub, Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshot(ctx, hub, hubBucket, hubSnap, testSnapKey); err != nil {
		t.Fatal(err)
	}
	if regionBucket == hubBucket {
		// Its object crosses the leaf node asynchronously: wait for it, so that the
		// replica reads what a sidecar starting later would.
		testsupport.Until(t, 10*time.Second, "the hub's snapshot in the region's bucket of the same name", func() bool {
			oi, err := regionObs.GetInfo(ctx, event.DefaultStream)
			return err == nil && oi.NUID != written.NUID
		})
	}

	hubSeq = publishJTIs("after-", after)
	mirrorHolds(hubSeq)

	r, set, _ := snapReplica(t, regions.Leaf, regionBucket)
	if !r.Ready() {
		t.Fatal("the region's replica is not ready")
	}
	snapWait(t, fmt.Sprintf("the replica at the hub's sequence %d", hubSeq), func() bool { return r.LastSequence() == hubSeq })
	var missing []string
	for prefix, n := range map[string]int{"before-": before, "after-": after} {
		for i := range n {
			if jti := fmt.Sprint(prefix, i); !set.HasJTI(set.JTIKey(snapIss, jti)) {
				missing = append(missing, jti)
			}
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the region's replica, ready, does not deny %d revocations: %v", len(missing), missing)
	}
	return r
}

// checkSnapshotLoads checks that the replica's one snapshot load had result want.
func checkSnapshotLoads(t *testing.T, r *Replica, want string) {
	t.Helper()
	for _, result := range snapshotResults {
		n := 0.0
		if result == want {
			n = 1
		}
		if got := snapLoads(r, result); got != n {
			t.Errorf("revoked_snapshot_loads_total{result=%q} = %v, want %v", result, got, n)
		}
	}
}
