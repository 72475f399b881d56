package sync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
	d := newSnapReader(bytes.NewReader(b))
	nj, nc, err := d.header(s)
	if err != nil {
		return err
	}
	if nj > uint64(len(b)) || nc > uint64(len(b)) {
		return ErrBadSnapshot
	}
	s.JTI = make([]SnapshotJTI, 0, nj)
	s.Cutoffs = make([]SnapshotCutoff, 0, nc)
	err = d.entries(nj, nc, func(iss, jti []byte, exp int64) {
		s.JTI = append(s.JTI, SnapshotJTI{Iss: string(iss), JTI: string(jti), Exp: exp})
	}, func(iss, claim, value []byte, nb int64) {
		s.Cutoffs = append(s.Cutoffs, SnapshotCutoff{Iss: string(iss), Claim: string(claim), Value: string(value), NotBefore: nb})
	})
	return err
}

// snapReader decodes a snapshot as a stream, so that a replica applies entries as they
// arrive instead of holding the whole object and a copy of every string.
type snapReader struct {
	r   *bufio.Reader
	buf [4][]byte // the strings of the current entry; reused
	err error
}

func newSnapReader(r io.Reader) *snapReader { return &snapReader{r: bufio.NewReaderSize(r, 256<<10)} }

func (d *snapReader) fail(err error) {
	if d.err == nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = ErrBadSnapshot
		}
		d.err = err
	}
}

func (d *snapReader) uvarint() uint64 {
	v, err := binary.ReadUvarint(d.r)
	if err != nil {
		d.fail(err)
	}
	return v
}

func (d *snapReader) varint() int64 {
	v, err := binary.ReadVarint(d.r)
	if err != nil {
		d.fail(err)
	}
	return v
}

// bytes reads a length-prefixed string into buffer i, valid until the next call with i.
func (d *snapReader) bytes(i int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > event.MaxPayload {
		d.fail(ErrBadSnapshot)
		return nil
	}
	b := append(d.buf[i][:0], make([]byte, n)...)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.fail(err)
		return nil
	}
	d.buf[i] = b
	return b
}

func (d *snapReader) header(s *Snapshot) (nj, nc uint64, err error) {
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(d.r, magic); err != nil || string(magic) != snapshotMagic {
		return 0, 0, ErrBadSnapshot
	}
	s.Stream = string(d.bytes(0))
	s.Created = time.Unix(0, d.varint())
	s.Sequence = d.uvarint()
	nj, nc = d.uvarint(), d.uvarint()
	return nj, nc, d.err
}

// entries reads nj jti entries and nc cutoffs, then checks that nothing follows. The
// slices given to the callbacks are valid only during the call.
func (d *snapReader) entries(nj, nc uint64, jti func(iss, jti []byte, exp int64), cutoff func(iss, claim, value []byte, nb int64)) error {
	for i := uint64(0); i < nj && d.err == nil; i++ {
		iss, id, exp := d.bytes(0), d.bytes(1), d.varint()
		if d.err == nil {
			jti(iss, id, exp)
		}
	}
	for i := uint64(0); i < nc && d.err == nil; i++ {
		iss, claim, value, nb := d.bytes(0), d.bytes(1), d.bytes(2), d.varint()
		if d.err == nil {
			cutoff(iss, claim, value, nb)
		}
	}
	if d.err != nil {
		return d.err
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		if err == nil {
			err = ErrBadSnapshot
		}
		return err // trailing bytes, or the object store's digest mismatch
	}
	return nil
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
// one, and returns its sequence (0: none, replay everything). It applies entries as it
// reads them; if the object then turns out bad (truncated, or its digest does not
// match), the entries applied so far stay and the whole stream is replayed: applying
// events again changes nothing, so nothing is lost either way.
func (r *Replica) loadSnapshot(ctx context.Context, info *jetstream.StreamInfo) uint64 {
	if r.opts.SnapshotBucket == "" {
		return 0
	}
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	start := time.Now()
	fail := func(msg string, args ...any) uint64 {
		r.log.Warn(msg+"; replaying the whole stream", append([]any{"bucket", r.opts.SnapshotBucket}, args...)...)
		return 0
	}
	obs, err := r.js.ObjectStore(c, r.opts.SnapshotBucket)
	if err != nil {
		return fail("no snapshot bucket", "err", err)
	}
	res, err := obs.Get(c, r.opts.Stream)
	if err != nil {
		return fail("no snapshot", "err", err)
	}
	defer res.Close()
	d := newSnapReader(res)
	var s Snapshot
	nj, nc, err := d.header(&s)
	if err != nil {
		return fail("unreadable snapshot", "err", err)
	}
	if s.Stream != r.opts.Stream || !s.Created.Equal(info.Created) || s.Sequence > info.State.LastSeq {
		return fail("snapshot of another stream or incarnation",
			"snapshot_sequence", s.Sequence, "stream_last_sequence", info.State.LastSeq)
	}
	now := time.Now().Unix()
	grace := int64(r.opts.Leeway / time.Second)
	life := int64(r.opts.MaxTokenLifetime / time.Second)
	allowed := r.opts.CutoffClaims
	if allowed == nil {
		allowed = event.DefaultCutoffClaims
	}
	issuers := make(map[string]string) // the few issuers, shared by every entry
	intern := func(b []byte) string {
		if v, ok := issuers[string(b)]; ok {
			return v
		}
		v := string(b)
		if len(issuers) < 1024 {
			issuers[v] = v
		}
		return v
	}
	err = d.entries(nj, nc, func(iss, jti []byte, exp int64) {
		if exp+grace >= now {
			r.set.AddJTI(r.set.JTIKey(intern(iss), string(jti)), exp)
		}
	}, func(iss, claim, value []byte, nb int64) {
		// A snapshot built with a wider claim list than this replica's: keep to ours,
		// as the replica would have rejected those events.
		if nb+life+grace >= now && slices.Contains(allowed, string(claim)) {
			r.set.AddCutoff(r.set.CutoffKey(intern(iss), string(claim), string(value)), nb)
		}
	})
	if err != nil {
		return fail("bad snapshot", "err", err)
	}
	r.lastSeq.Store(s.Sequence)
	r.log.Info("snapshot loaded", "sequence", s.Sequence, "jti_entries", nj, "cutoffs", nc,
		"took", time.Since(start).String())
	return s.Sequence
}
