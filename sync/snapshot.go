package sync

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
)

// A snapshot is the compacted state of the revocation stream up to one sequence: the
// live jti entries and cutoffs, without the events' audit fields, stored as one object
// (named after the stream) in a NATS Object Store bucket. A replica with
// Options.SnapshotBucket loads it first, then replays the stream from the sequence
// after it, so a cold start reads a few tens of MB instead of every event.
//
// No loss: a snapshot at sequence S reflects every event with a sequence ≤ S (it is
// built by applying them in order), and the replica's ordered consumer starts at S+1.
// Events applied twice change nothing (CONTRACT section 2). A snapshot from another
// incarnation of the stream (a different creation time, or S past the stream's last
// sequence), or one that cannot be read, is ignored: the replica replays everything.
//
// Entries hold the strings, not blocklist keys: keys are hashed under a per-process
// secret seed that never leaves the process.
type Snapshot struct {
	Stream   string    // stream name
	Created  time.Time // the stream's creation time
	Sequence uint64    // last stream sequence reflected
	JTI      []SnapshotJTI
	Cutoffs  []SnapshotCutoff
}

// SnapshotJTI is one revoked token id.
type SnapshotJTI struct {
	Iss, JTI string
	Exp      int64
}

// SnapshotCutoff is one cutoff, with the greatest not_before seen.
type SnapshotCutoff struct {
	Iss, Claim, Value string
	NotBefore         int64
}

const snapshotMagic = "REVSNAP1"

// ErrBadSnapshot is returned for a snapshot object that does not parse.
var ErrBadSnapshot = errors.New("sync: malformed snapshot")

// BuildSnapshot replays the stream named in opts as it stands now and returns its
// compacted state: entries already past use at now are left out, as a replica would
// skip them. opts takes the same defaults as New.
func BuildSnapshot(ctx context.Context, js jetstream.JetStream, opts Options, now time.Time) (*Snapshot, error) {
	if opts.Stream == "" {
		opts.Stream = event.DefaultStream
	}
	if opts.SubjectPrefix == "" {
		opts.SubjectPrefix = event.DefaultSubjectPrefix
	}
	if opts.MaxTokenLifetime <= 0 {
		opts.MaxTokenLifetime = 24 * time.Hour
	}
	st, err := js.Stream(ctx, opts.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", opts.Stream, err)
	}
	info := st.CachedInfo()
	snap := &Snapshot{Stream: opts.Stream, Created: info.Created, Sequence: info.State.LastSeq}
	if info.State.Msgs == 0 {
		return snap, nil
	}
	target := info.State.LastSeq
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{opts.SubjectPrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	grace := int64(opts.Leeway / time.Second)
	life := int64(opts.MaxTokenLifetime / time.Second)
	jtis := make(map[[2]string]int64)
	cutoffs := make(map[[3]string]int64)
	done := make(chan struct{})
	var last uint64
	finished := false
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil || finished {
			return
		}
		last = meta.Sequence.Stream
		if ev, err := decodeEvent(msg.Data(), opts.CutoffClaims); err == nil {
			switch ev.Type {
			case event.TypeJTI:
				if k := [2]string{ev.Iss, ev.JTI}; ev.Exp+grace >= now.Unix() && ev.Exp > jtis[k] {
					jtis[k] = ev.Exp
				}
			case event.TypeCutoff:
				if k := [3]string{ev.Iss, ev.Claim, ev.Value}; ev.NotBefore+life+grace >= now.Unix() && ev.NotBefore > cutoffs[k] {
					cutoffs[k] = ev.NotBefore
				}
			}
		}
		if last >= target || meta.NumPending == 0 {
			finished = true
			close(done)
		}
	}, jetstream.PullMaxMessages(2000))
	if err != nil {
		return nil, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		cc.Stop()
		return nil, ctx.Err()
	}
	cc.Stop()
	<-cc.Closed()
	snap.Sequence = last
	snap.JTI = make([]SnapshotJTI, 0, len(jtis))
	for k, exp := range jtis {
		snap.JTI = append(snap.JTI, SnapshotJTI{Iss: k[0], JTI: k[1], Exp: exp})
	}
	snap.Cutoffs = make([]SnapshotCutoff, 0, len(cutoffs))
	for k, nb := range cutoffs {
		snap.Cutoffs = append(snap.Cutoffs, SnapshotCutoff{Iss: k[0], Claim: k[1], Value: k[2], NotBefore: nb})
	}
	return snap, nil
}

// MarshalBinary encodes the snapshot: a magic string, the header, then length-prefixed
// strings and varints.
func (s *Snapshot) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 64+len(s.JTI)*64+len(s.Cutoffs)*64)
	b = append(b, snapshotMagic...)
	b = appendString(b, s.Stream)
	b = binary.AppendVarint(b, s.Created.UnixNano())
	b = binary.AppendUvarint(b, s.Sequence)
	b = binary.AppendUvarint(b, uint64(len(s.JTI)))
	b = binary.AppendUvarint(b, uint64(len(s.Cutoffs)))
	for _, e := range s.JTI {
		b = appendString(appendString(b, e.Iss), e.JTI)
		b = binary.AppendVarint(b, e.Exp)
	}
	for _, c := range s.Cutoffs {
		b = appendString(appendString(appendString(b, c.Iss), c.Claim), c.Value)
		b = binary.AppendVarint(b, c.NotBefore)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (s *Snapshot) UnmarshalBinary(b []byte) error {
	d := snapDecoder{b: b}
	if !bytes.HasPrefix(b, []byte(snapshotMagic)) {
		return ErrBadSnapshot
	}
	d.b = b[len(snapshotMagic):]
	s.Stream = d.str()
	s.Created = time.Unix(0, d.varint())
	s.Sequence = d.uvarint()
	nj, nc := d.uvarint(), d.uvarint()
	if d.err || nj > uint64(len(d.b)) || nc > uint64(len(d.b)) {
		return ErrBadSnapshot
	}
	s.JTI = make([]SnapshotJTI, nj)
	for i := range s.JTI {
		s.JTI[i] = SnapshotJTI{Iss: d.str(), JTI: d.str(), Exp: d.varint()}
	}
	s.Cutoffs = make([]SnapshotCutoff, nc)
	for i := range s.Cutoffs {
		s.Cutoffs[i] = SnapshotCutoff{Iss: d.str(), Claim: d.str(), Value: d.str(), NotBefore: d.varint()}
	}
	if d.err || len(d.b) != 0 {
		return ErrBadSnapshot
	}
	return nil
}

type snapDecoder struct {
	b   []byte
	err bool
}

func (d *snapDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *snapDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *snapDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err, d.b = true, nil
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// WriteSnapshot stores s in the Object Store bucket (created if missing) under the
// stream's name, replacing the previous snapshot.
func WriteSnapshot(ctx context.Context, js jetstream.JetStream, bucket string, s *Snapshot) error {
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: bucket, Description: "revoked: compacted snapshots of the revocation stream",
	})
	if err != nil {
		return fmt.Errorf("object store %s: %w", bucket, err)
	}
	b, _ := s.MarshalBinary()
	_, err = obs.PutBytes(ctx, s.Stream, b)
	return err
}

// ReadSnapshot reads the snapshot of stream from bucket. The object store checks the
// object's SHA-256 digest.
func ReadSnapshot(ctx context.Context, js jetstream.JetStream, bucket, stream string) (*Snapshot, error) {
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, err
	}
	b, err := obs.GetBytes(ctx, stream)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{}
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return s, nil
}

// loadSnapshot applies the snapshot of Options.SnapshotBucket, if there is a usable
// one, and returns its sequence (0: none, replay everything).
func (r *Replica) loadSnapshot(ctx context.Context, info *jetstream.StreamInfo) uint64 {
	if r.opts.SnapshotBucket == "" {
		return 0
	}
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	s, err := ReadSnapshot(c, r.js, r.opts.SnapshotBucket, r.opts.Stream)
	if err != nil {
		r.log.Warn("no usable snapshot; replaying the whole stream", "bucket", r.opts.SnapshotBucket, "err", err)
		return 0
	}
	if s.Stream != r.opts.Stream || !s.Created.Equal(info.Created) || s.Sequence > info.State.LastSeq {
		r.log.Warn("snapshot is of another stream or incarnation; replaying the whole stream",
			"bucket", r.opts.SnapshotBucket, "snapshot_sequence", s.Sequence, "stream_last_sequence", info.State.LastSeq)
		return 0
	}
	now := time.Now().Unix()
	grace := int64(r.opts.Leeway / time.Second)
	life := int64(r.opts.MaxTokenLifetime / time.Second)
	for _, e := range s.JTI {
		if e.Exp+grace >= now {
			r.set.AddJTI(r.set.JTIKey(e.Iss, e.JTI), e.Exp)
		}
	}
	allowed := r.opts.CutoffClaims
	if allowed == nil {
		allowed = event.DefaultCutoffClaims
	}
	for _, c := range s.Cutoffs {
		// A snapshot built with a wider claim list than this replica's: keep to ours,
		// as the replica would have rejected those events.
		if c.NotBefore+life+grace >= now && slices.Contains(allowed, c.Claim) {
			r.set.AddCutoff(r.set.CutoffKey(c.Iss, c.Claim, c.Value), c.NotBefore)
		}
	}
	r.lastSeq.Store(s.Sequence)
	r.log.Info("snapshot loaded", "sequence", s.Sequence, "jti_entries", len(s.JTI), "cutoffs", len(s.Cutoffs),
		"took", time.Since(start).String())
	return s.Sequence
}
