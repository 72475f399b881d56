package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/flagenv"
	revsync "github.com/revoked-dev/revoked/sync"
)

// DefaultSnapshotBucket is the Object Store bucket snapshots go to by default.
const DefaultSnapshotBucket = "revoked-snapshots"

var snapshotCmd = &command{
	path:    "snapshot",
	args:    "[flags]",
	summary: "write a compacted snapshot of the stream, for fast sidecar cold starts",
	help: `
Replays the revocation stream as it stands now, keeps only the live entries (the jti
entries whose token has not expired, the greatest cutoff per key), and stores them as one
object in a NATS Object Store bucket, replacing the previous snapshot. A sidecar started
with --snapshot-bucket loads it, then replays only the events after it; a missing or
outdated snapshot only costs it a full replay, never an event.

Run it on a schedule (a Kubernetes CronJob every few minutes): the events after the
snapshot are what a cold start still replays.

Examples:
  revokectl snapshot
  revokectl snapshot --bucket revoked-snapshots --max-token-lifetime 24h`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		bucket := fs.String("bucket", DefaultSnapshotBucket, "Object Store `BUCKET` to write the snapshot to (created if missing)")
		lifetime := fs.Duration("max-token-lifetime", 24*time.Hour, "the sidecars' --max-token-lifetime, a `DURATION`: cutoffs older than this are left out")
		var claims flagenv.Strings
		fs.Var(&claims, "cutoff-claim", "claims a cutoff may name (repeatable); default sub, sid, client_id")
		return func(e *env, c *conn, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q", args[0])
			}
			if len(claims) == 0 {
				claims = append(claims, event.DefaultCutoffClaims...)
			}
			nc, js, err := c.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			start := time.Now()
			snap, err := revsync.BuildSnapshot(e.ctx, js, revsync.Options{
				Stream: c.stream, SubjectPrefix: c.subjectPrefix, CutoffClaims: claims, MaxTokenLifetime: *lifetime,
			}, start)
			if err != nil {
				return fmt.Errorf("snapshot NOT written: %w", err)
			}
			if err := revsync.WriteSnapshot(e.ctx, js, *bucket, snap); err != nil {
				return fmt.Errorf("snapshot NOT written: %w", err)
			}
			fmt.Fprintf(e.stdout, "snapshot of %s at sequence %d written to bucket %s: %d jti entries, %d cutoffs, in %s\n",
				snap.Stream, snap.Sequence, *bucket, len(snap.JTI), len(snap.Cutoffs), time.Since(start).Round(time.Millisecond))
			return nil
		}
	},
}
