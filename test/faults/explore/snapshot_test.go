package explore

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/stream"

	revsync "github.com/revoked-dev/revoked/sync"
)

// The APIs that move, in one place: snapshots are signed (Ed25519) by the job that
// builds them, and a replica trusts the public key it is given; the replica's clock.

// minMaxAge is the shortest stream MaxAge a replica accepts for the window.
func minMaxAge(lifetime, leeway time.Duration) time.Duration {
	return stream.MinMaxAge(lifetime, leeway)
}

// notReadyReason says why the replica is not ready.
func notReadyReason(r *revsync.Replica) string { return r.NotReadyReason() }

// setClock gives the replica its clock (revsync.Options.Now).
func setClock(o *revsync.Options, now func() time.Time) { o.Now = now }

// snapshotKeys is the snapshot job's key pair, and another one (someone with write
// access to the bucket, without the job's key).
type snapshotKeys struct {
	pub            ed25519.PublicKey
	priv, attacker ed25519.PrivateKey
}

func newSnapshotKeys() snapshotKeys {
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, attacker, _ := ed25519.GenerateKey(nil)
	return snapshotKeys{pub: pub, priv: priv, attacker: attacker}
}

// trustSnapshots configures a replica to load snapshots signed by the job's key, as
// the sidecar does with --snapshot-public-key.
func (w *world) trustSnapshots(o *revsync.Options) {
	o.SnapshotPublicKeys = []ed25519.PublicKey{w.snapKeys.pub}
}

// writeSnapshot stores s signed by the job, or (forged) by someone else.
func (w *world) writeSnapshot(ctx context.Context, s *revsync.Snapshot, forged bool) error {
	key := w.snapKeys.priv
	if forged {
		key = w.snapKeys.attacker
	}
	return revsync.WriteSnapshot(ctx, w.js, snapBucket, s, key)
}

// forgedSnapshot is an empty snapshot at the stream's last sequence: every replica
// started from it would skip every revocation, if it trusted it.
func forgedSnapshot(info *jetstream.StreamInfo) *revsync.Snapshot {
	return &revsync.Snapshot{Stream: info.Config.Name, Subjects: "revocations.>", Created: info.Created,
		Sequence: info.State.LastSeq, BuiltAt: time.Now(), Builder: "explore: forged"}
}
