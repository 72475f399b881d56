package sync

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
)

// A snapshot is the compacted content of the revocation stream up to one sequence, stored
// as one object (named after the stream) in a NATS Object Store bucket. A replica with
// Options.SnapshotBucket loads it first, then replays the stream from the sequence after
// it, so a cold start reads a few tens of MB instead of every event.
//
// No loss, whatever the settings of the job that built it: a snapshot at sequence S holds
// every event with a sequence ≤ S that any replica could keep (every jti event and every
// cutoff that is well formed, a cutoff on any claim name), compacted (the greatest exp per
// (iss, jti), the greatest not_before per (iss, claim, value, client_id), each not_before bounded by
// EffectiveNotBefore as the replica bounds live events), with no policy applied: the
// replica that loads it applies its own (claims, lifetime, leeway, MaxEntries) to every
// entry, exactly as to the events of the stream. Events applied twice change nothing
// (CONTRACT section 2).
//
// Trust: whoever can write the bucket could otherwise make every new replica skip every
// revocation (an empty snapshot at the stream's last sequence). A snapshot is signed with
// Ed25519 by the job that builds it (revokectl snapshot --signing-key; the private key
// lives only there), and a replica verifies the signature over the header, which commits
// to every entry, before it applies a single entry. A snapshot that fails anything (no
// public key, a bad signature, another stream or incarnation, a subject filter other than
// the replica's, a sequence past the stream's last, a malformed or truncated object, an
// older format) is ignored: the replica replays the whole stream, logs a warning and
// counts it in revoked_snapshot_loads_total{result}.
//
// Format REVSNAP3 (all integers varints):
//
//	"REVSNAP3" | uvarint len(header) | header | Ed25519 signature (64 bytes) | chunk...
//
// The signature covers everything before it. The header holds the build parameters
// (stream, subject filter, the stream's creation time, the last sequence covered, when and
// by whom it was built, events read and skipped, entry counts) and, for each chunk of
// entries, its length, its entry count and its SHA-256: every chunk is checked against the
// signed header before its entries are applied, so a replica holds one chunk (at most
// 1 MiB) at a time, never the whole object, and never applies an entry the signer did not
// write. Entries hold the strings, not blocklist keys: keys are hashed under a per-process
// secret seed that never leaves the process. An entry is a flags byte, then its iss and
// claim unless the flags say they repeat the previous entry's, its value, the client_id of
// a client-scoped cutoff (flag entryClient), and its time.
//
// REVSNAP3 differs from REVSNAP2 only by the client_id of client-scoped cutoffs. A
// REVSNAP2 snapshot cannot say which cutoffs were scoped (its builder merged them with the
// unscoped ones of the same key), so it is refused like REVSNAP1: a replica never widens
// nor drops a client scope because of a snapshot.
type Snapshot struct {
	Stream   string    // stream name
	Subjects string    // the subject filter the events were read with: <prefix>.>
	Created  time.Time // the stream's creation time: its incarnation
	Sequence uint64    // last stream sequence reflected
	BuiltAt  time.Time // when it was built, by the builder's clock
	Builder  string    // who built it (revokectl's version and host); information only
	Events   uint64    // events read from the stream
	Skipped  uint64    // events no replica would apply (malformed, unknown type, invalid)
	JTI      []SnapshotJTI
	Cutoffs  []SnapshotCutoff
}

// SnapshotJTI is one revoked token id, with the greatest exp seen.
type SnapshotJTI struct {
	Iss, JTI string
	Exp      int64
}

// SnapshotCutoff is one cutoff, with the greatest not_before seen per (iss, claim,
// value, client_id); ClientID is empty for a cutoff on every client's tokens.
type SnapshotCutoff struct {
	Iss, Claim, Value, ClientID string
	NotBefore                   int64
}

const (
	snapshotMagic    = "REVSNAP3"
	oldSnapshotMagic = "REVSNAP1" // unsigned
	v2SnapshotMagic  = "REVSNAP2" // no client scopes

	maxSnapshotHeader = 1 << 20   // bytes: about 30,000 chunks, some 7 GB of entries
	maxSnapshotChunk  = 1 << 20   // bytes a replica reads before checking them
	snapshotChunkSize = 256 << 10 // what the writer aims for
	maxSnapshotName   = 1024      // stream, subject filter, builder
	maxSnapshotIss    = event.MaxPayload
	maxUnixTime       = 1<<32 - 1 // as event.Validate: replicas store times in 32 bits

	entryCutoff    = 1 << 0 // else a jti entry
	entrySameIss   = 1 << 1 // the iss of the chunk's previous entry
	entrySameClaim = 1 << 2 // the claim of the chunk's previous cutoff
	entryClient    = 1 << 3 // a cutoff scoped to one client: its client_id follows the value
)

// Snapshot errors.
var (
	// ErrBadSnapshot is returned for a snapshot object that does not parse: truncated,
	// trailing bytes, a chunk that does not match its digest, a field out of range.
	ErrBadSnapshot = errors.New("sync: malformed snapshot")
	// ErrSnapshotSignature is returned for a snapshot not signed by any trusted key.
	ErrSnapshotSignature = errors.New("sync: snapshot signature does not verify with the trusted public keys")
	// ErrOldSnapshot is returned for a snapshot in an older format, never used: REVSNAP1
	// (unsigned, and built with the builder's own policy) or REVSNAP2 (its cutoffs lost
	// their client scope).
	ErrOldSnapshot = errors.New("sync: snapshot in an older format (REVSNAP1 or REVSNAP2)")
	// ErrNoSnapshotKey is returned when no public key is trusted: no snapshot is used.
	ErrNoSnapshotKey = errors.New("sync: no snapshot public key")
)

func badSnapshot(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, a...))
}

// BuildSnapshot replays the stream named in opts (opts.Stream, opts.SubjectPrefix, with
// New's defaults) as it stands now and returns its compacted content. No policy of opts
// is applied (claims, lifetime, leeway, entry bound): the replica that loads the snapshot
// applies its own. now is recorded as the build time.
func BuildSnapshot(ctx context.Context, js jetstream.JetStream, opts Options, now time.Time) (*Snapshot, error) {
	if opts.Stream == "" {
		opts.Stream = event.DefaultStream
	}
	if opts.SubjectPrefix == "" {
		opts.SubjectPrefix = event.DefaultSubjectPrefix
	}
	st, err := js.Stream(ctx, opts.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", opts.Stream, err)
	}
	info := st.CachedInfo()
	filter := opts.SubjectPrefix + ".>"
	snap := &Snapshot{Stream: opts.Stream, Subjects: filter, Created: info.Created, Sequence: info.State.LastSeq, BuiltAt: now}
	if info.State.Msgs == 0 {
		return snap, nil
	}
	target := info.State.LastSeq
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	jtis := make(map[[2]string]int64)
	cutoffs := make(map[[4]string]int64)
	done := make(chan struct{})
	var last uint64
	finished := false
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil || finished {
			return
		}
		last = meta.Sequence.Stream
		snap.Events++
		ev, err := decodeAnyClaim(msg.Data())
		switch {
		case err != nil:
			snap.Skipped++
		case ev.Type == event.TypeJTI:
			if k := [2]string{ev.Iss, ev.JTI}; ev.Exp > jtis[k] {
				jtis[k] = ev.Exp
			}
		case ev.Type == event.TypeCutoff:
			nb := EffectiveNotBefore(ev.NotBefore, meta.Timestamp)
			if k := [4]string{ev.Iss, ev.Claim, ev.Value, ev.ClientID}; nb > cutoffs[k] {
				cutoffs[k] = nb
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
		snap.Cutoffs = append(snap.Cutoffs, SnapshotCutoff{Iss: k[0], Claim: k[1], Value: k[2], ClientID: k[3], NotBefore: nb})
	}
	return snap, nil
}

// decodeAnyClaim decodes and validates an event as a replica would, except that a cutoff
// may name any claim: which claims count is the loading replica's policy.
func decodeAnyClaim(payload []byte) (event.Event, error) {
	ev, err := decodeEvent(payload, nil)
	if errors.Is(err, event.ErrInvalid) && ev.Type == event.TypeCutoff && ev.Claim != "" && len(ev.Claim) <= event.MaxValueLen {
		err = ev.Validate([]string{ev.Claim})
	}
	return ev, err
}

// MarshalSigned encodes the snapshot in format REVSNAP3, signed with key. It sorts the
// entries (a snapshot of the same events is the same bytes, but for its header).
func (s *Snapshot) MarshalSigned(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("sync: a snapshot needs an Ed25519 signing key")
	}
	slices.SortFunc(s.JTI, func(a, b SnapshotJTI) int {
		return cmpStrings(a.Iss, b.Iss, a.JTI, b.JTI, "", "")
	})
	slices.SortFunc(s.Cutoffs, func(a, b SnapshotCutoff) int {
		if c := cmpStrings(a.Iss, b.Iss, a.Claim, b.Claim, a.Value, b.Value); c != 0 {
			return c
		}
		return strings.Compare(a.ClientID, b.ClientID)
	})
	type chunk struct {
		n, entries int
		sum        [sha256.Size]byte
	}
	var chunks []chunk
	body := make([]byte, 0, 64+len(s.JTI)*48+len(s.Cutoffs)*64)
	start, entries := 0, 0
	var iss, claim string
	first, firstCutoff := true, true
	closeChunk := func() {
		if entries > 0 {
			chunks = append(chunks, chunk{len(body) - start, entries, sha256.Sum256(body[start:])})
		}
		start, entries, first, firstCutoff = len(body), 0, true, true
	}
	put := func(cut bool, i, c, v, client string, t int64) error {
		if len(i) > maxSnapshotIss || len(c) == 0 && cut || len(c) > event.MaxValueLen ||
			len(v) == 0 || len(v) > event.MaxValueLen || len(client) > event.MaxValueLen || client != "" && !cut ||
			t <= 0 || t > maxUnixTime {
			return badSnapshot("entry out of range (iss %d bytes, claim %q, value %d bytes, client_id %d bytes, time %d)", len(i), c, len(v), len(client), t)
		}
		flags := byte(0)
		if cut {
			flags |= entryCutoff
		}
		if client != "" {
			flags |= entryClient
		}
		if !first && i == iss {
			flags |= entrySameIss
		}
		if cut && !firstCutoff && c == claim {
			flags |= entrySameClaim
		}
		body = append(body, flags)
		if flags&entrySameIss == 0 {
			body = appendString(body, i)
		}
		if cut && flags&entrySameClaim == 0 {
			body = appendString(body, c)
		}
		body = appendString(body, v)
		if client != "" {
			body = appendString(body, client)
		}
		body = binary.AppendUvarint(body, uint64(t))
		iss, first, entries = i, false, entries+1
		if cut {
			claim, firstCutoff = c, false
		}
		if len(body)-start >= snapshotChunkSize {
			closeChunk()
		}
		return nil
	}
	for _, e := range s.JTI {
		if err := put(false, e.Iss, "", e.JTI, "", e.Exp); err != nil {
			return nil, err
		}
	}
	for _, c := range s.Cutoffs {
		if err := put(true, c.Iss, c.Claim, c.Value, c.ClientID, c.NotBefore); err != nil {
			return nil, err
		}
	}
	closeChunk()

	for _, f := range []string{s.Stream, s.Subjects, s.Builder} {
		if len(f) > maxSnapshotName {
			return nil, badSnapshot("header field of %d bytes", len(f))
		}
	}
	h := appendString(nil, s.Stream)
	h = appendString(h, s.Subjects)
	h = binary.AppendVarint(h, s.Created.UnixNano())
	h = binary.AppendUvarint(h, s.Sequence)
	h = binary.AppendVarint(h, s.BuiltAt.UnixNano())
	h = appendString(h, s.Builder)
	h = binary.AppendUvarint(h, s.Events)
	h = binary.AppendUvarint(h, s.Skipped)
	h = binary.AppendUvarint(h, uint64(len(s.JTI)))
	h = binary.AppendUvarint(h, uint64(len(s.Cutoffs)))
	h = binary.AppendUvarint(h, uint64(len(chunks)))
	for _, c := range chunks {
		h = binary.AppendUvarint(h, uint64(c.n))
		h = binary.AppendUvarint(h, uint64(c.entries))
		h = append(h, c.sum[:]...)
	}
	if len(h) > maxSnapshotHeader {
		return nil, badSnapshot("header of %d bytes", len(h))
	}
	out := make([]byte, 0, len(snapshotMagic)+binary.MaxVarintLen64+len(h)+ed25519.SignatureSize+len(body))
	out = append(out, snapshotMagic...)
	out = binary.AppendUvarint(out, uint64(len(h)))
	out = append(out, h...)
	out = append(out, ed25519.Sign(key, out)...)
	return append(out, body...), nil
}

func cmpStrings(a1, b1, a2, b2, a3, b3 string) int {
	if c := strings.Compare(a1, b1); c != 0 {
		return c
	}
	if c := strings.Compare(a2, b2); c != 0 {
		return c
	}
	return strings.Compare(a3, b3)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// ParseSnapshot verifies and decodes a whole snapshot object: signed by one of keys,
// complete, every chunk matching the signed header. It checks the form, not what a
// replica checks against its stream (name, incarnation, sequence) or its policy.
func ParseSnapshot(b []byte, keys []ed25519.PublicKey) (*Snapshot, error) {
	d, s, err := readSnapshotHeader(bufio.NewReader(bytes.NewReader(b)), keys)
	if err != nil {
		return nil, err
	}
	err = d.entries(func(iss, jti string, exp int64) {
		s.JTI = append(s.JTI, SnapshotJTI{Iss: iss, JTI: jti, Exp: exp})
	}, func(iss, claim, value, client string, nb int64) {
		s.Cutoffs = append(s.Cutoffs, SnapshotCutoff{Iss: iss, Claim: claim, Value: value, ClientID: client, NotBefore: nb})
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// snapChunk is one chunk as the signed header describes it.
type snapChunk struct {
	n, entries uint64
	sum        [sha256.Size]byte
}

// snapReader reads a snapshot's entries, one verified chunk at a time.
type snapReader struct {
	r               *bufio.Reader
	chunks          []snapChunk
	nJTI, nCutoff   uint64
	buf             []byte
	gotJTI, gotCuts uint64
}

// readSnapshotHeader reads the magic, the header and the signature, verifies the
// signature with keys, then decodes the header. Nothing after the signature has been read.
func readSnapshotHeader(r *bufio.Reader, keys []ed25519.PublicKey) (*snapReader, *Snapshot, error) {
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return nil, nil, badSnapshot("no magic: %v", err)
	}
	switch string(magic) {
	case snapshotMagic:
	case oldSnapshotMagic, v2SnapshotMagic:
		return nil, nil, ErrOldSnapshot
	default:
		return nil, nil, badSnapshot("magic %q", magic)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n == 0 || n > maxSnapshotHeader {
		return nil, nil, badSnapshot("header length %d (%v)", n, err)
	}
	signed := binary.AppendUvarint(magic, n)
	hstart := len(signed)
	signed = append(signed, make([]byte, n)...)
	if _, err := io.ReadFull(r, signed[hstart:]); err != nil {
		return nil, nil, badSnapshot("header: %v", err)
	}
	sig := make([]byte, ed25519.SignatureSize)
	if _, err := io.ReadFull(r, sig); err != nil {
		return nil, nil, badSnapshot("signature: %v", err)
	}
	if len(keys) == 0 {
		return nil, nil, ErrNoSnapshotKey
	}
	ok := false
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, signed, sig) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, nil, ErrSnapshotSignature
	}
	// Signed: what follows is what the snapshot job wrote; it is still checked, as a
	// job with a bug (or an old one) could write anything.
	h := &dec{b: string(signed[hstart:])}
	s := &Snapshot{}
	d := &snapReader{r: r}
	s.Stream = h.str(maxSnapshotName)
	s.Subjects = h.str(maxSnapshotName)
	s.Created = time.Unix(0, h.varint())
	s.Sequence = h.uvarint()
	s.BuiltAt = time.Unix(0, h.varint())
	s.Builder = h.str(maxSnapshotName)
	s.Events, s.Skipped = h.uvarint(), h.uvarint()
	d.nJTI, d.nCutoff = h.uvarint(), h.uvarint()
	nchunks := h.uvarint()
	if h.err == nil && nchunks > uint64(len(h.b)) {
		h.fail("%d chunks", nchunks)
	}
	var total uint64
	for i := uint64(0); i < nchunks && h.err == nil; i++ {
		c := snapChunk{n: h.uvarint(), entries: h.uvarint()}
		copy(c.sum[:], h.raw(sha256.Size))
		if c.n == 0 || c.n > maxSnapshotChunk || c.entries == 0 || c.entries > c.n {
			h.fail("chunk %d: %d bytes, %d entries", i, c.n, c.entries)
		}
		total += c.entries // ≤ 2^20 per chunk, fewer than 2^20 chunks: no overflow
		d.chunks = append(d.chunks, c)
	}
	if h.err == nil && len(h.b) != 0 {
		h.fail("%d bytes after the header", len(h.b))
	}
	if h.err == nil && (d.nJTI > total || d.nCutoff != total-d.nJTI) {
		h.fail("%d jti entries and %d cutoffs, %d in the chunks", d.nJTI, d.nCutoff, total)
	}
	if h.err != nil {
		return nil, nil, h.err
	}
	return d, s, nil
}

// entries reads every chunk, checks it against its digest, then calls jti or cutoff for
// each of its entries; it then checks that nothing follows. An error leaves the entries
// of the chunks before it delivered: each was signed.
func (d *snapReader) entries(jti func(iss, jti string, exp int64), cutoff func(iss, claim, value, client string, nb int64)) error {
	for i, c := range d.chunks {
		if uint64(cap(d.buf)) < c.n {
			d.buf = make([]byte, c.n)
		}
		b := d.buf[:c.n]
		if _, err := io.ReadFull(d.r, b); err != nil {
			return badSnapshot("chunk %d: %v", i, err)
		}
		if sha256.Sum256(b) != c.sum {
			return badSnapshot("chunk %d does not match its digest", i)
		}
		// One string per chunk: the entries' strings are slices of it, safe to keep.
		e := &dec{b: string(b)}
		var iss, claim string
		first, firstCutoff := true, true
		for n := uint64(0); n < c.entries; n++ {
			flags := e.byte()
			if flags&^(entryCutoff|entrySameIss|entrySameClaim|entryClient) != 0 ||
				flags&entrySameIss != 0 && first ||
				flags&(entrySameClaim|entryClient) != 0 && flags&entryCutoff == 0 ||
				flags&entrySameClaim != 0 && firstCutoff {
				e.fail("entry flags %#x", flags)
			}
			if flags&entrySameIss == 0 {
				iss = e.str(maxSnapshotIss)
			}
			first = false
			if flags&entryCutoff != 0 {
				if flags&entrySameClaim == 0 {
					claim = e.value()
				}
				firstCutoff = false
				value, client := e.value(), ""
				if flags&entryClient != 0 {
					client = e.value()
				}
				nb := e.time()
				if e.err != nil {
					return fmt.Errorf("chunk %d: %w", i, e.err)
				}
				d.gotCuts++
				cutoff(iss, claim, value, client, nb)
			} else {
				id, exp := e.value(), e.time()
				if e.err != nil {
					return fmt.Errorf("chunk %d: %w", i, e.err)
				}
				d.gotJTI++
				jti(iss, id, exp)
			}
		}
		if e.err == nil && len(e.b) != 0 {
			e.fail("%d bytes after the entries", len(e.b))
		}
		if e.err != nil {
			return fmt.Errorf("chunk %d: %w", i, e.err)
		}
	}
	if d.gotJTI != d.nJTI || d.gotCuts != d.nCutoff {
		return badSnapshot("%d jti entries and %d cutoffs, the header says %d and %d", d.gotJTI, d.gotCuts, d.nJTI, d.nCutoff)
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		if err == nil {
			return badSnapshot("bytes after the last chunk")
		}
		return badSnapshot("after the last chunk: %v", err) // the object store's digest mismatch
	}
	return nil
}

// dec decodes varints and length-prefixed strings from memory; the first error sticks.
type dec struct {
	b   string
	err error
}

func (d *dec) fail(format string, a ...any) {
	if d.err == nil {
		d.err = badSnapshot(format, a...)
	}
	d.b = ""
}

func (d *dec) byte() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *dec) uvarint() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if len(d.b) == 0 || shift >= 64 {
			d.fail("bad varint")
			return 0
		}
		c := d.b[0]
		d.b = d.b[1:]
		if shift == 63 && c > 1 {
			d.fail("varint overflows")
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
}

func (d *dec) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// time reads a unix time in the range event.Validate accepts.
func (d *dec) time() int64 {
	v := d.uvarint()
	if d.err == nil && (v == 0 || v > maxUnixTime) {
		d.fail("time %d out of range", v)
	}
	return int64(min(v, math.MaxInt64))
}

func (d *dec) raw(n int) string {
	if len(d.b) < n {
		d.fail("truncated")
		return ""
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

// value reads a jti, a claim name or a claim value: 1 to event.MaxValueLen bytes.
func (d *dec) value() string {
	s := d.str(event.MaxValueLen)
	if d.err == nil && s == "" {
		d.fail("empty value")
	}
	return s
}

func (d *dec) str(max int) string {
	n := d.uvarint()
	if d.err == nil && n > uint64(max) {
		d.fail("string of %d bytes (at most %d)", n, max)
	}
	if d.err != nil {
		return ""
	}
	return d.raw(int(n))
}

// WriteSnapshot signs s with key and stores it in the Object Store bucket (created if
// missing) under the stream's name, replacing the previous snapshot.
func WriteSnapshot(ctx context.Context, js jetstream.JetStream, bucket string, s *Snapshot, key ed25519.PrivateKey) error {
	b, err := s.MarshalSigned(key)
	if err != nil {
		return err
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: bucket, Description: "revoked: signed, compacted snapshots of the revocation stream",
	})
	if err != nil {
		return fmt.Errorf("object store %s: %w", bucket, err)
	}
	_, err = obs.PutBytes(ctx, s.Stream, b)
	return err
}

// ReadSnapshot reads and verifies the snapshot of stream from bucket (see ParseSnapshot).
func ReadSnapshot(ctx context.Context, js jetstream.JetStream, bucket, stream string, keys []ed25519.PublicKey) (*Snapshot, error) {
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, err
	}
	b, err := obs.GetBytes(ctx, stream)
	if err != nil {
		return nil, err
	}
	return ParseSnapshot(b, keys)
}

// GenerateSnapshotKey returns a new Ed25519 key pair for signing snapshots, PEM-encoded:
// the private key as PKCS#8 (what `openssl genpkey -algorithm ed25519` writes), the
// public key as PKIX (what `openssl pkey -pubout` writes).
func GenerateSnapshotKey() (privatePEM, publicPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pk, err := MarshalSnapshotPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), pk, nil
}

// MarshalSnapshotPublicKey encodes pub as a PKIX PEM block.
func MarshalSnapshotPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParseSnapshotSigningKey reads an Ed25519 private key from a PKCS#8 PEM block.
func ParseSnapshotSigningKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM \"PRIVATE KEY\" block (PKCS#8, as openssl genpkey -algorithm ed25519 writes)")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return priv, nil
}

// ParseSnapshotPublicKeys reads the Ed25519 public keys a replica trusts for snapshots:
// PKIX PEM "PUBLIC KEY" blocks (revokectl snapshot keygen, openssl pkey -pubout) or
// "CERTIFICATE" blocks holding an Ed25519 key (what Helm's genCAWithKey makes of the key
// the chart generates: Helm has no function that writes a bare public key). Several keys
// allow a rotation: trust the new key, then sign with it, then drop the old one.
func ParseSnapshotPublicKeys(b []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for i := 1; ; i++ {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		var k any
		var err error
		switch blk.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "CERTIFICATE":
			// The certificate is only a container for its key: its validity dates, issuer
			// and signature are not checked. What makes the key trusted is that it was
			// put in the file, exactly as for a bare public key; an expired certificate
			// must not turn a sidecar into one that replays the whole stream.
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(blk.Bytes); err == nil {
				k = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %d is %q, want \"PUBLIC KEY\" (PKIX, as openssl pkey -pubout writes) or \"CERTIFICATE\"", i, blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", i, blk.Type, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("PEM block %d (%s) holds a %T, not an Ed25519 key: snapshots are signed with Ed25519", i, blk.Type, k)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM \"PUBLIC KEY\" or \"CERTIFICATE\" block")
	}
	return keys, nil
}

// Snapshot load results (revoked_snapshot_loads_total{result}).
const (
	snapOK          = "ok"
	snapMissing     = "missing"       // no bucket, or no object for the stream
	snapNoKey       = "no_key"        // no trusted public key
	snapOldFormat   = "old_format"    // REVSNAP1 or REVSNAP2
	snapBadSig      = "bad_signature" // not signed by a trusted key
	snapOtherStream = "other_stream"  // another stream, incarnation or subject filter, or past the stream's end
	snapMalformed   = "malformed"     // a signed object that does not parse or is cut short
	snapError       = "error"         // NATS errors, timeouts
)

// snapshotRequestTimeout bounds each request of a snapshot load, and a read that stalls.
const snapshotRequestTimeout = 10 * time.Second

// snapshotMinRate is the slowest a snapshot read may be: the object read gets a deadline
// of snapshotRequestTimeout plus its size at this rate (37 MiB: 158 s) instead of
// nats.go's default 5 s, which cut short any read longer than that (a large snapshot, a
// slow link, a fleet reading at once) and cost a full replay. A stall is the stall
// guard's to end, well before.
const snapshotMinRate = 256 << 10 // bytes a second

// detachedReads counts detachRead's copies still running, for tests.
var detachedReads atomic.Int64

// getDetached opens the object name for reading under that deadline (see detachRead).
func getDetached(ctx context.Context, obs jetstream.ObjectStore, name string) (io.ReadCloser, error) {
	ic, icancel := context.WithTimeout(ctx, snapshotRequestTimeout)
	info, err := obs.GetInfo(ic, name)
	icancel()
	if err != nil {
		return nil, err
	}
	limit := snapshotRequestTimeout + time.Duration(info.Size)*time.Second/snapshotMinRate
	readCtx, cancel := context.WithTimeout(ctx, limit)
	res, err := obs.Get(readCtx, name)
	if err != nil {
		cancel()
		return nil, err
	}
	return detachRead(res, cancel), nil
}

// detachRead reads res in a goroutine of its own through a pipe, so that the load can
// give the read up at once: nats.go's object reader holds its lock for the whole of a
// blocked Read (until the context's deadline), and its Close waits for that lock, so a
// stall guard that closed res itself would hang with it (the explorer found a replica
// not ready for minutes). Closing the returned reader stops the copy at its next write;
// a copy stuck in res ends by the read's deadline at the latest, then closes res and
// calls done (the read context's cancel).
func detachRead(res io.ReadCloser, done context.CancelFunc) io.ReadCloser {
	pr, pw := io.Pipe()
	detachedReads.Add(1)
	go func() {
		defer detachedReads.Add(-1)
		defer done()
		_, err := io.Copy(pw, res)
		pw.CloseWithError(err)
		_ = res.Close()
	}()
	return pr
}

// stallGuard cancels its context once the reads it watches make no progress for a
// while: a snapshot of 1M entries streams for seconds, but a consumer lost in a NATS
// restart would otherwise wait out the whole load's deadline.
type stallGuard struct {
	ctx    context.Context
	cancel context.CancelFunc
	last   atomic.Int64 // unix nanoseconds of the last progress
	done   chan struct{}
}

func newStallGuard(parent context.Context, after time.Duration) *stallGuard {
	g := &stallGuard{done: make(chan struct{})}
	g.ctx, g.cancel = context.WithCancel(parent)
	g.progress()
	go func() {
		t := time.NewTicker(after / 10)
		defer t.Stop()
		for {
			select {
			case <-g.done:
				return
			case <-g.ctx.Done():
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, g.last.Load())) > after {
					g.cancel()
					return
				}
			}
		}
	}()
	return g
}

func (g *stallGuard) progress() { g.last.Store(time.Now().UnixNano()) }

func (g *stallGuard) stop() {
	close(g.done)
	g.cancel()
}

// closeOnStall closes c once the guard gives up, and returns the function that stops
// watching. nats.go's object reader sees a cancelled context only when its next chunk
// arrives: a read whose chunks stopped coming would block for ever (bench/fleet saw 51
// of 200 replicas starting together wait there over 4 minutes, not ready).
func (g *stallGuard) closeOnStall(c io.Closer) (stop func() bool) {
	return context.AfterFunc(g.ctx, func() { _ = c.Close() })
}

// reader marks progress on every read that returns bytes.
func (g *stallGuard) reader(r io.Reader) io.Reader { return guardedReader{r, g} }

type guardedReader struct {
	r io.Reader
	g *stallGuard
}

func (gr guardedReader) Read(p []byte) (int, error) {
	n, err := gr.r.Read(p)
	if n > 0 {
		gr.g.progress()
	}
	return n, err
}

// snapshotResults are the labels of revoked_snapshot_loads_total.
var snapshotResults = []string{snapOK, snapMissing, snapNoKey, snapOldFormat, snapBadSig, snapOtherStream, snapMalformed, snapError}

// loadSnapshot applies the snapshot of Options.SnapshotBucket, if there is a usable one,
// sets the last applied sequence to its sequence, and returns it (0: none, replay
// everything). It verifies the signature and checks the header against the stream
// before it applies a single entry; each entry is then checked as an event of the
// stream would be (lengths, times, the replica's claim policy) and applied by the
// replica's own rule (applyEvent: lifetime, leeway, MaxEntries). If the object turns out
// bad part-way (a chunk cut short or not matching its signed digest), the entries applied
// so far stay (each was signed, and applying events again changes nothing) and the whole
// stream is replayed.
func (r *Replica) loadSnapshot(ctx context.Context, info *jetstream.StreamInfo) uint64 {
	if r.opts.SnapshotBucket == "" {
		return 0
	}
	loads := r.snapshotLoads
	// A request lost in a NATS restart must not hold the replica for long: each request
	// gets snapshotRequestTimeout, and the read is given up once it stalls that long
	// (see stallGuard); a snapshot not used costs a full replay, never an entry. No
	// deadline bounds the whole load: a read that keeps making progress ends by itself,
	// since the bytes read before the signature are bounded (maxSnapshotHeader) and those
	// after it by the signed header, and one that slows to a stop is the stall guard's.
	start := time.Now()
	fail := func(result, msg string, args ...any) uint64 {
		loads.WithLabelValues(result).Inc()
		r.log.Warn("snapshot not used: "+msg+"; replaying the whole stream",
			append([]any{"bucket", r.opts.SnapshotBucket, "stream", r.opts.Stream, "result", result}, args...)...)
		return 0
	}
	keys := r.opts.SnapshotPublicKeys
	if len(keys) == 0 {
		return fail(snapNoKey, "no snapshot public key (--snapshot-public-key unset, or its file missing or empty)")
	}
	oc, ocancel := context.WithTimeout(ctx, snapshotRequestTimeout)
	obs, err := r.js.ObjectStore(oc, r.opts.SnapshotBucket)
	ocancel()
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return fail(snapMissing, "no snapshot bucket", "err", err)
	}
	if err != nil {
		return fail(snapError, "snapshot bucket unreadable", "err", err)
	}
	guard := newStallGuard(ctx, snapshotRequestTimeout)
	defer guard.stop()
	// Read under a deadline of ours, not nats.go's 5 s, in a goroutine the guard can
	// abandon (getDetached).
	body, err := getDetached(guard.ctx, obs, r.opts.Stream)
	guard.progress()
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fail(snapMissing, "no snapshot of the stream in the bucket", "err", err)
	}
	if err != nil {
		return fail(snapError, "snapshot unreadable", "err", err)
	}
	defer body.Close()
	defer guard.closeOnStall(body)()
	d, s, err := readSnapshotHeader(bufio.NewReaderSize(guard.reader(body), 64<<10), keys)
	switch {
	case errors.Is(err, ErrOldSnapshot):
		return fail(snapOldFormat, "snapshot in an older format (REVSNAP1 or REVSNAP2; run revokectl snapshot --signing-key with this version)", "err", err)
	case errors.Is(err, ErrSnapshotSignature):
		return fail(snapBadSig, "snapshot NOT signed by a trusted key: someone other than the snapshot job may have written it, or the job signs with another key than --snapshot-public-key", "err", err)
	case errors.Is(err, ErrBadSnapshot):
		return fail(snapMalformed, "malformed snapshot", "err", err)
	case err != nil:
		return fail(snapError, "snapshot unreadable", "err", err)
	}
	filter := r.opts.SubjectPrefix + ".>"
	if s.Stream != r.opts.Stream || !s.Created.Equal(info.Created) || s.Subjects != filter || s.Sequence > info.State.LastSeq {
		return fail(snapOtherStream, "snapshot of another stream, incarnation or subject filter",
			"snapshot_stream", s.Stream, "snapshot_created", s.Created, "stream_created", info.Created,
			"snapshot_subjects", s.Subjects, "subjects", filter,
			"snapshot_sequence", s.Sequence, "stream_last_sequence", info.State.LastSeq)
	}

	now := r.now()
	skipped := map[string]int{}
	strs := make(map[string]string) // the few issuers and claim names, shared by every entry
	intern := func(v string) string {
		if w, ok := strs[v]; ok {
			return w
		}
		if len(strs) < 1024 {
			strs[v] = v
		}
		return v
	}
	apply := func(ev *event.Event) {
		if err := ev.Validate(r.opts.CutoffClaims); err != nil {
			skipped[event.Reason(err)]++
			return
		}
		if reason := r.applyEvent(ev, now); reason != "" {
			skipped[reason]++
		}
	}
	err = d.entries(func(iss, jti string, exp int64) {
		apply(&event.Event{Type: event.TypeJTI, Iss: intern(iss), JTI: jti, Exp: exp})
	}, func(iss, claim, value, client string, nb int64) {
		apply(&event.Event{Type: event.TypeCutoff, Iss: intern(iss), Claim: intern(claim), Value: value, ClientID: intern(client), NotBefore: nb})
	})
	var skipArgs []any
	for _, reason := range slices.Sorted(maps.Keys(skipped)) {
		r.rejected.WithLabelValues(reason).Add(float64(skipped[reason]))
		skipArgs = append(skipArgs, "skipped_"+reason, skipped[reason])
	}
	if err != nil {
		return fail(snapMalformed, "snapshot cut short or corrupt (the entries read so far were signed and stay)", append([]any{"err", err}, skipArgs...)...)
	}
	r.lastSeq.Store(s.Sequence)
	loads.WithLabelValues(snapOK).Inc()
	args := []any{"sequence", s.Sequence, "jti_entries", d.nJTI, "cutoffs", d.nCutoff,
		"built_at", s.BuiltAt.UTC().Format(time.RFC3339), "builder", s.Builder, "took", time.Since(start).String()}
	r.log.Info("snapshot loaded", append(args, skipArgs...)...)
	if skipped["replica_full"] > 0 {
		r.log.Error("snapshot holds more entries than --max-entries: the replica is full and not ready",
			"max_entries", r.opts.MaxEntries, "not_kept", skipped["replica_full"])
	}
	return s.Sequence
}
