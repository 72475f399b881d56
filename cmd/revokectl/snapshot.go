package main

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/revoked-dev/revoked/internal/buildinfo"
	revsync "github.com/revoked-dev/revoked/sync"
)

// DefaultSnapshotBucket is the Object Store bucket snapshots go to by default.
const DefaultSnapshotBucket = "revoked-snapshots"

var snapshotCmd = &command{
	path:    "snapshot",
	args:    "--signing-key FILE [flags]",
	summary: "write a signed, compacted snapshot of the stream, for fast sidecar cold starts",
	help: `
Replays the revocation stream as it stands now and stores its compacted content (the
greatest exp per token id, the greatest not_before per cutoff) as one object in a NATS
Object Store bucket, replacing the previous snapshot. It applies no policy: every
well-formed event is kept, a cutoff on any claim, however old, since the sidecars apply
their own (--cutoff-claim, --max-token-lifetime, --leeway, --max-entries) when they load
it. A cutoff's not_before is bounded by the moment the stream stored it, as the sidecars
bound live events.

The snapshot is signed with the Ed25519 key in --signing-key (PKCS#8 PEM, from
'revokectl snapshot keygen' or 'openssl genpkey -algorithm ed25519'). Sidecars started
with --snapshot-bucket and --snapshot-public-key load it, then replay only the events
after it; they ignore a snapshot that is not signed by that key, of another stream or
incarnation of it, or malformed, and replay the whole stream instead: a missing, outdated
or forged snapshot costs a full replay, never an event. Keep the private key only where
this command runs, and give this job NATS credentials of its own: the sidecars need only
read the bucket.

Run it on a schedule (a Kubernetes CronJob every few minutes): the events after the
snapshot are what a cold start still replays.

Examples:
  revokectl snapshot keygen --private-key snapshot.key --public-key snapshot.pub
  revokectl snapshot --signing-key snapshot.key
  revokectl snapshot --signing-key /secrets/snapshot.key --bucket revoked-snapshots`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		bucket := fs.String("bucket", DefaultSnapshotBucket, "Object Store `BUCKET` to write the snapshot to (created if missing)")
		keyFile := fs.String("signing-key", "", "`FILE` with the Ed25519 private key that signs the snapshot (PKCS#8 PEM); required")
		return func(e *env, c *conn, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q", args[0])
			}
			if *keyFile == "" {
				return usagef("--signing-key is required: sidecars load only snapshots signed by the key their --snapshot-public-key names (create one with 'revokectl snapshot keygen')")
			}
			key, err := readSigningKey(*keyFile)
			if err != nil {
				return err
			}
			nc, js, err := c.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			start := time.Now()
			snap, err := revsync.BuildSnapshot(e.ctx, js, revsync.Options{Stream: c.stream, SubjectPrefix: c.subjectPrefix}, start)
			if err != nil {
				return fmt.Errorf("snapshot NOT written: %w", err)
			}
			snap.Builder = builder()
			if err := revsync.WriteSnapshot(e.ctx, js, *bucket, snap, key); err != nil {
				return fmt.Errorf("snapshot NOT written: %w", err)
			}
			fmt.Fprintf(e.stdout, "snapshot of %s at sequence %d written to bucket %s: %d jti entries, %d cutoffs (%d events read, %d malformed left out), signed, in %s\n",
				snap.Stream, snap.Sequence, *bucket, len(snap.JTI), len(snap.Cutoffs), snap.Events, snap.Skipped, time.Since(start).Round(time.Millisecond))
			return nil
		}
	},
}

var snapshotKeygenCmd = &command{
	path:    "snapshot keygen",
	args:    "--private-key FILE [--public-key FILE]",
	summary: "create the Ed25519 key pair that signs snapshots",
	help: `
Writes a new Ed25519 private key (PKCS#8 PEM, readable by its owner only) to
--private-key, for 'revokectl snapshot --signing-key', and prints its public key (PKIX
PEM), also written to --public-key if given, for the sidecars' --snapshot-public-key. It
never overwrites a file. The same pair comes from openssl:

  openssl genpkey -algorithm ed25519 -out snapshot.key
  openssl pkey -in snapshot.key -pubout -out snapshot.pub

To rotate: give the sidecars both public keys (one file, both PEM blocks), then sign with
the new key, then drop the old public key.

Examples:
  revokectl snapshot keygen --private-key snapshot.key --public-key snapshot.pub
  kubectl create secret generic revoked-snapshot-signing-key --from-file=snapshot.key
  kubectl create configmap revoked-snapshot-public-key --from-file=snapshot.pub`,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		privFile := fs.String("private-key", "", "`FILE` to write the private key to; required")
		pubFile := fs.String("public-key", "", "`FILE` to write the public key to as well")
		return func(e *env, _ *conn, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q", args[0])
			}
			if *privFile == "" {
				return usagef("--private-key is required")
			}
			priv, pub, err := revsync.GenerateSnapshotKey()
			if err != nil {
				return err
			}
			if err := writeNew(*privFile, priv, 0o600); err != nil {
				return err
			}
			if *pubFile != "" {
				if err := writeNew(*pubFile, pub, 0o644); err != nil {
					return err
				}
			}
			_, err = e.stdout.Write(pub)
			return err
		}
	},
}

var snapshotVerifyCmd = &command{
	path:    "snapshot verify",
	args:    "--public-key FILE [flags]",
	summary: "read the stored snapshot and check it as a sidecar would",
	help: `
Reads the snapshot of the stream from the bucket, verifies its signature with the public
keys in --public-key (the sidecars' --snapshot-public-key), checks it against the stream
(name, incarnation, subjects, sequence) and prints what it holds. Exit status 1 if a
sidecar would not use it.

Examples:
  revokectl snapshot verify --public-key snapshot.pub`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		bucket := fs.String("bucket", DefaultSnapshotBucket, "Object Store `BUCKET` holding the snapshot")
		pubFile := fs.String("public-key", "", "`FILE` with the trusted public keys (PKIX PEM, or certificates holding them, as the chart's ConfigMap has); required")
		return func(e *env, c *conn, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q", args[0])
			}
			if *pubFile == "" {
				return usagef("--public-key is required")
			}
			b, err := os.ReadFile(*pubFile)
			if err != nil {
				return err
			}
			keys, err := revsync.ParseSnapshotPublicKeys(b)
			if err != nil {
				return fmt.Errorf("%s: %w", *pubFile, err)
			}
			nc, js, err := c.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			snap, err := revsync.ReadSnapshot(e.ctx, js, *bucket, c.stream, keys)
			if err != nil {
				return fmt.Errorf("snapshot of %s in bucket %s NOT usable: %w", c.stream, *bucket, err)
			}
			st, err := js.Stream(e.ctx, c.stream)
			if err != nil {
				return fmt.Errorf("stream %s: %w", c.stream, err)
			}
			info := st.CachedInfo()
			fmt.Fprintf(e.stdout, "snapshot of %s (created %s, subjects %s) at sequence %d, signed; built %s by %q: %d jti entries, %d cutoffs (%d events read, %d malformed left out)\n",
				snap.Stream, snap.Created.UTC().Format(time.RFC3339Nano), snap.Subjects, snap.Sequence,
				snap.BuiltAt.UTC().Format(time.RFC3339), snap.Builder, len(snap.JTI), len(snap.Cutoffs), snap.Events, snap.Skipped)
			switch filter := c.subjectPrefix + ".>"; {
			case snap.Stream != c.stream || !snap.Created.Equal(info.Created):
				return fmt.Errorf("NOT usable: of another stream or incarnation (the stream %s was created %s)", c.stream, info.Created.UTC().Format(time.RFC3339Nano))
			case snap.Subjects != filter:
				return fmt.Errorf("NOT usable: built from subjects %s, the sidecars read %s", snap.Subjects, filter)
			case snap.Sequence > info.State.LastSeq:
				return fmt.Errorf("NOT usable: past the stream's last sequence %d", info.State.LastSeq)
			}
			fmt.Fprintf(e.stdout, "usable: the stream is at sequence %d; a sidecar starting now replays %d events after the snapshot\n",
				info.State.LastSeq, info.State.LastSeq-snap.Sequence)
			return nil
		}
	},
}

func readSigningKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--signing-key: %w", err)
	}
	key, err := revsync.ParseSnapshotSigningKey(b)
	if err != nil {
		return nil, fmt.Errorf("--signing-key %s: %w", path, err)
	}
	return key, nil
}

// writeNew writes b to a file that must not exist yet.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists; not overwritten", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// builder names who built a snapshot: revokectl's build (as --version says it) and the
// host, for the log of the sidecars that load it.
func builder() string {
	b := buildinfo.Get()
	host, _ := os.Hostname()
	return fmt.Sprintf("revokectl %s (%s) on %s", b.Version, b.Revision, host)
}
