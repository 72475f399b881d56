package sync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// Issue 9, rows 7 and 8: a snapshot built with other settings than the replicas' loses
// nothing; a snapshot written by anyone but the snapshot job, or for another stream, is
// never used; what a snapshot holds is bounded and checked.

// putObject stores b as the snapshot of the default stream in bucket, as anyone with
// write access to the bucket can.
func putObject(t *testing.T, js jetstream.JetStream, bucket string, b []byte) {
	t.Helper()
	ctx := context.Background()
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, event.DefaultStream, b); err != nil {
		t.Fatal(err)
	}
}

// Row 7: the snapshot job runs with narrower cutoff claims, a shorter lifetime and no
// leeway; a replica started from its snapshot still holds every revocation the replica's
// own settings keep, as a full replay would.
func TestSnapshotBuiltWithOtherSettings(t *testing.T) {
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	now := time.Now()
	published := now.Unix()
	snapPublish(t, js,
		fmt.Sprintf(`{"type":"jti","jti":"long","exp":%d,"iss":%q}`, now.Add(20*time.Hour).Unix(), snapIss),
		// Expired 5 s ago: inside the replicas' 10 s leeway, outside the job's 0.
		fmt.Sprintf(`{"type":"jti","jti":"leeway","exp":%d,"iss":%q}`, now.Unix()-5, snapIss),
		// Two hours old: inside the replicas' 24 h lifetime, outside the job's 1 s.
		fmt.Sprintf(`{"type":"cutoff","claim":"sub","value":"old","not_before":%d}`, now.Unix()-7200),
		// A claim the replicas allow (--cutoff-claim tenant) and the job does not.
		fmt.Sprintf(`{"type":"cutoff","claim":"tenant","value":"acme","not_before":%d}`, now.Unix()-60),
		fmt.Sprintf(`{"type":"cutoff","claim":"sid","value":"s-1","not_before":%d}`, now.Unix()-60),
		// Far in the future: bounded by the moment the stream stored it, as live.
		fmt.Sprintf(`{"type":"cutoff","claim":"sub","value":"future","not_before":%d}`, now.Unix()+3600),
		// A claim the replicas do not allow: in the snapshot, skipped at load.
		fmt.Sprintf(`{"type":"cutoff","claim":"org","value":"x","not_before":%d}`, now.Unix()-60),
		`{"type":"cutoff","claim":"","value":"x","not_before":1}`, // no replica keeps it
		`not json`,
	)
	snap, err := BuildSnapshot(ctx, js, Options{CutoffClaims: []string{"sid"}, MaxTokenLifetime: time.Second}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.JTI) != 2 || len(snap.Cutoffs) != 5 || snap.Skipped != 2 || snap.Events != 9 {
		t.Errorf("snapshot: %d jti, %d cutoffs, %d of %d events skipped; want 2, 5, 2 of 9", len(snap.JTI), len(snap.Cutoffs), snap.Skipped, snap.Events)
	}
	if err := WriteSnapshot(ctx, js, "SNAPS", snap, testSnapKey); err != nil {
		t.Fatal(err)
	}
	last := snapPublish(t, js, snapJTI("after"))

	var logs testsupport.LogBuffer
	r, set, _, stop := startReplicaWith(t, ns, Options{SnapshotBucket: "SNAPS", CutoffClaims: []string{"tenant"},
		MaxTokenLifetime: 24 * time.Hour, Leeway: 10 * time.Second, Log: slog.New(slog.NewTextHandler(&logs, nil))}, testSnapPub)
	t.Cleanup(stop)
	snapWait(t, "the replica to reach the stream's end", func() bool { return r.LastSequence() == last })
	if snapLoads(r, "ok") != 1 {
		t.Fatalf("the snapshot was not loaded:\n%s", logs.String())
	}
	for _, jti := range []string{"long", "leeway", "after"} {
		if !set.HasJTI(set.JTIKey(snapIss, jti)) {
			t.Errorf("jti %s missing", jti)
		}
	}
	for _, c := range [][2]string{{"sub", "old"}, {"tenant", "acme"}, {"sid", "s-1"}, {"sub", "future"}} {
		if _, ok := set.Cutoff(set.CutoffKey("", c[0], c[1])); !ok {
			t.Errorf("cutoff %s=%s missing", c[0], c[1])
		}
	}
	if _, ok := set.Cutoff(set.CutoffKey("", "org", "x")); ok {
		t.Error("a cutoff on a claim the replica does not allow was applied")
	}
	if n := testutil.ToFloat64(r.rejected.WithLabelValues("invalid")); n != 1 {
		t.Errorf("rejected{invalid} = %v, want 1 (the org cutoff)", n)
	}
	want := EffectiveNotBefore(published+3600, time.Unix(published, 0))
	if nb, _ := set.Cutoff(set.CutoffKey("", "sub", "future")); nb > want+5 || nb < want-5 || want >= published+3600 {
		t.Errorf("future cutoff enforced from %d, want %d, bounded by the moment it was stored (%d), as a live event", nb, want, published)
	}
	// Denied as a token, not only present as an entry: a token of user "old" issued
	// before the cutoff, and one of tenant acme.
	for _, claims := range [][]blocklist.Claim{{{Name: "sub", Value: "old"}}, {{Name: "tenant", Value: "acme"}}} {
		q := set.NewQuery(snapIss, "some-token", now.Unix()-8000, claims)
		if set.Check(&q) != blocklist.RevokedCutoff {
			t.Errorf("token with %v allowed", claims)
		}
	}
}

// Row 8: someone who can write the bucket (not the snapshot job: they have no signing
// key) writes a snapshot that would make every new replica skip every revocation. Each is
// ignored, loudly; the replica replays the stream and holds every revocation.
func TestSnapshotForgedIsIgnored(t *testing.T) {
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	var payloads []string
	for i := range 20 {
		payloads = append(payloads, snapJTI(fmt.Sprint("revoked-", i)))
	}
	payloads = append(payloads, snapCutoff("user-1", time.Now().Unix()-10))
	last := snapPublish(t, js, payloads...)
	st, err := js.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	created := st.CachedInfo().Created
	// What every forgery claims: the stream, at its last sequence, with nothing in it.
	empty := &Snapshot{Stream: event.DefaultStream, Subjects: "revocations.>", Created: created, Sequence: last}
	_, attacker, _ := ed25519.GenerateKey(nil)
	wrongKey, err := empty.MarshalSigned(attacker)
	if err != nil {
		t.Fatal(err)
	}
	sigAt := snapSigAt(t, wrongKey)
	unsigned := slices.Clone(wrongKey)
	clear(unsigned[sigAt : sigAt+ed25519.SignatureSize])
	// A real signature of the trusted key, over another header (an older snapshot's).
	legit, err := (&Snapshot{Stream: event.DefaultStream, Subjects: "revocations.>", Created: created, Sequence: 1}).MarshalSigned(testSnapKey)
	if err != nil {
		t.Fatal(err)
	}
	resequenced := slices.Clone(wrongKey)
	copy(resequenced[sigAt:], legit[snapSigAt(t, legit):][:ed25519.SignatureSize])
	// The old format, which nothing protected.
	old := []byte(oldSnapshotMagic)
	old = appendString(old, event.DefaultStream)
	old = binary.AppendVarint(old, created.UnixNano())
	old = binary.AppendUvarint(old, last)
	old = append(old, 0, 0)

	cases := []struct {
		name, result string
		object       []byte
		keys         []ed25519.PublicKey
	}{
		{"wrong key", "bad_signature", wrongKey, []ed25519.PublicKey{testSnapPub}},
		{"unsigned", "bad_signature", unsigned, []ed25519.PublicKey{testSnapPub}},
		{"header changed", "bad_signature", resequenced, []ed25519.PublicKey{testSnapPub}},
		{"old format", "old_format", old, []ed25519.PublicKey{testSnapPub}},
		{"replica without a key", "no_key", wrongKey, nil},
		{"attacker's key trusted too", "ok", wrongKey, []ed25519.PublicKey{testSnapPub, attacker.Public().(ed25519.PublicKey)}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bucket := fmt.Sprint("FORGED", i)
			putObject(t, js, bucket, tc.object)
			var logs testsupport.LogBuffer
			r, set, _, stop := startReplicaWith(t, ns, Options{SnapshotBucket: bucket, Log: slog.New(slog.NewTextHandler(&logs, nil))}, tc.keys...)
			t.Cleanup(stop)
			if n := snapLoads(r, tc.result); n != 1 {
				t.Errorf("snapshot loads %s = %v, want 1; log:\n%s", tc.result, n, logs.String())
			}
			if tc.result == "ok" {
				// The control: with the attacker's key trusted, the forgery works. This
				// is what the signature prevents.
				if set.HasJTI(set.JTIKey(snapIss, "revoked-0")) {
					t.Fatal("a trusted empty snapshot at the last sequence did not skip the stream")
				}
				return
			}
			snapWait(t, "the replica to replay the stream", func() bool { return r.LastSequence() == last })
			for i := range 20 {
				if !set.HasJTI(set.JTIKey(snapIss, fmt.Sprint("revoked-", i))) {
					t.Fatalf("revoked-%d missing", i)
				}
			}
			if _, ok := set.Cutoff(set.CutoffKey("", "sub", "user-1")); !ok {
				t.Fatal("cutoff missing")
			}
			if !strings.Contains(logs.String(), "level=WARN msg=\"snapshot not used") {
				t.Fatalf("no warning:\n%s", logs.String())
			}
		})
	}
}

// snapSigAt is where an object's signature starts.
func snapSigAt(t *testing.T, b []byte) int {
	t.Helper()
	n, k := binary.Uvarint(b[len(snapshotMagic):])
	if k <= 0 {
		t.Fatal("no header length")
	}
	return len(snapshotMagic) + k + int(n)
}

// A snapshot signed by the right key but of another incarnation of the stream (deleted
// and created again, with more events than the snapshot covered, so that only Created
// tells them apart), of another stream, of other subjects, or past the stream's end, is
// ignored: the replica replays the stream.
func TestSnapshotOfAnotherStreamIsIgnored(t *testing.T) {
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	snapPublish(t, js, snapJTI("old-1"), snapJTI("old-2"), snapJTI("old-3"))
	snap, err := BuildSnapshot(ctx, js, Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshot(ctx, js, "SNAPS", snap, testSnapKey); err != nil {
		t.Fatal(err)
	}
	// The stream is deleted and created again under the same name, and gets more events
	// than the snapshot covered: name, subjects and sequence all fit; Created does not.
	if err := js.DeleteStream(ctx, event.DefaultStream); err != nil {
		t.Fatal(err)
	}
	js = ns.CreateStream(stream.Settings{})
	last := snapPublish(t, js, snapJTI("new-1"), snapJTI("new-2"), snapJTI("new-3"), snapJTI("new-4"), snapJTI("new-5"))
	if snap.Stream != event.DefaultStream || snap.Sequence > last {
		t.Fatalf("the test does not reach the Created check: snapshot of %s at %d, stream at %d", snap.Stream, snap.Sequence, last)
	}
	st, err := js.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	created := st.CachedInfo().Created
	check := func(t *testing.T, bucket string) {
		t.Helper()
		var logs testsupport.LogBuffer
		r, set, _, stop := startReplicaWith(t, ns, Options{SnapshotBucket: bucket, Log: slog.New(slog.NewTextHandler(&logs, nil))}, testSnapPub)
		t.Cleanup(stop)
		snapWait(t, "the replica to reach the stream's end", func() bool { return r.LastSequence() == last })
		for i := 1; i <= 5; i++ {
			if !set.HasJTI(set.JTIKey(snapIss, fmt.Sprint("new-", i))) {
				t.Fatalf("new-%d missing: the snapshot was used\n%s", i, logs.String())
			}
		}
		if set.HasJTI(set.JTIKey(snapIss, "old-1")) {
			t.Fatal("the snapshot's entries were applied")
		}
		if n := snapLoads(r, "other_stream"); n != 1 {
			t.Fatalf("snapshot loads other_stream = %v, want 1\n%s", n, logs.String())
		}
	}
	t.Run("re-created", func(t *testing.T) { check(t, "SNAPS") })
	for name, s := range map[string]*Snapshot{
		"other stream":   {Stream: "OTHER", Subjects: "revocations.>", Created: created, Sequence: last},
		"other subjects": {Stream: event.DefaultStream, Subjects: "other.>", Created: created, Sequence: last},
		"past the end":   {Stream: event.DefaultStream, Subjects: "revocations.>", Created: created, Sequence: last + 1},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := s.MarshalSigned(testSnapKey)
			if err != nil {
				t.Fatal(err)
			}
			bucket := strings.ReplaceAll(strings.ToUpper(name), " ", "_")
			putObject(t, js, bucket, b)
			check(t, bucket)
		})
	}
}

// A snapshot with more entries than the replica may hold: the entries past the bound are
// counted as replica_full, the replica says it is not ready and why, and keeps running.
func TestSnapshotBeyondMaxEntries(t *testing.T) {
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	ctx := context.Background()
	var payloads []string
	for i := range 50 {
		payloads = append(payloads, snapJTI(fmt.Sprint("j", i)))
	}
	last := snapPublish(t, js, payloads...)
	snap, err := BuildSnapshot(ctx, js, Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSnapshot(ctx, js, "SNAPS", snap, testSnapKey); err != nil {
		t.Fatal(err)
	}
	r, set, _, stop := startReplicaWith(t, ns, Options{SnapshotBucket: "SNAPS", MaxEntries: 20, PurgeEvery: 50 * time.Millisecond}, testSnapPub)
	t.Cleanup(stop)
	if snapLoads(r, "ok") != 1 || r.LastSequence() != last {
		t.Fatalf("snapshot not loaded (last sequence %d)", r.LastSequence())
	}
	if jti, _ := set.Len(); jti != 20 {
		t.Fatalf("%d entries, want 20", jti)
	}
	if n := testutil.ToFloat64(r.rejected.WithLabelValues("replica_full")); n != 30 {
		t.Fatalf("rejected{replica_full} = %v, want 30", n)
	}
	time.Sleep(200 * time.Millisecond) // a few purges and checks
	if r.Ready() || !strings.Contains(r.NotReadyReason(), "full") {
		t.Fatalf("ready %v (%q), want not ready: full", r.Ready(), r.NotReadyReason())
	}
}

// hostileObject is a signed object with any header and body.
func hostileObject(key ed25519.PrivateKey, header, body []byte) []byte {
	out := binary.AppendUvarint([]byte(snapshotMagic), uint64(len(header)))
	out = append(out, header...)
	out = append(out, ed25519.Sign(key, out)...)
	return append(out, body...)
}

// hostileHeader is a header for stream S with the given counts and chunks.
func hostileHeader(nJTI, nCutoff uint64, chunks ...snapChunk) []byte {
	h := appendString(nil, "S")
	h = appendString(h, "revocations.>")
	h = binary.AppendVarint(h, 1)
	h = binary.AppendUvarint(h, 1)
	h = binary.AppendVarint(h, 1)
	h = appendString(h, "")
	h = binary.AppendUvarint(h, 0)
	h = binary.AppendUvarint(h, 0)
	h = binary.AppendUvarint(h, nJTI)
	h = binary.AppendUvarint(h, nCutoff)
	h = binary.AppendUvarint(h, uint64(len(chunks)))
	for _, c := range chunks {
		h = binary.AppendUvarint(h, c.n)
		h = binary.AppendUvarint(h, c.entries)
		h = append(h, c.sum[:]...)
	}
	return h
}

// chunkOf describes body as one chunk of n entries.
func chunkOf(body []byte, n uint64) snapChunk {
	return snapChunk{n: uint64(len(body)), entries: n, sum: sha256.Sum256(body)}
}

// A hostile or broken object (huge counts, huge lengths, trailing bytes, truncation, bad
// flags, times out of range), signed or not, is rejected, without allocating more than a
// chunk's worth of memory.
func TestSnapshotHostileObjects(t *testing.T) {
	huge := binary.AppendUvarint(nil, 1<<62)
	jtiEntry := func(jti string, exp uint64) []byte {
		b := append([]byte{0}, appendString(nil, "iss")...)
		b = appendString(b, jti)
		return binary.AppendUvarint(b, exp)
	}
	good := jtiEntry("a", 100)
	longString := append(append([]byte{0}, huge...), "x"...)
	cases := map[string][]byte{
		"huge header length":   append([]byte(snapshotMagic), huge...),
		"header over 1 MiB":    append(binary.AppendUvarint([]byte(snapshotMagic), maxSnapshotHeader+1), make([]byte, 64)...),
		"header of 1 GiB":      append(binary.AppendUvarint([]byte(snapshotMagic), 1<<30), make([]byte, 64)...),
		"no signature":         binary.AppendUvarint([]byte(snapshotMagic), 10),
		"huge chunk count":     hostileObject(testSnapKey, append(hostileHeader(0, 0)[:len(hostileHeader(0, 0))-1], huge...), nil),
		"chunk over 1 MiB":     hostileObject(testSnapKey, hostileHeader(1, 0, snapChunk{n: maxSnapshotChunk + 1, entries: 1}), nil),
		"chunk of 1 GiB":       hostileObject(testSnapKey, hostileHeader(1, 0, snapChunk{n: 1 << 30, entries: 1}), make([]byte, 64)),
		"huge entry count":     hostileObject(testSnapKey, hostileHeader(1<<62, 0, snapChunk{n: 10, entries: 1 << 62}), nil),
		"counts disagree":      hostileObject(testSnapKey, hostileHeader(1<<40, 0, chunkOf(good, 1)), good),
		"huge string length":   hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(longString, 1)), longString),
		"jti too long":         hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(jtiEntry(strings.Repeat("x", 257), 100), 1)), jtiEntry(strings.Repeat("x", 257), 100)),
		"empty jti":            hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(jtiEntry("", 100), 1)), jtiEntry("", 100)),
		"time zero":            hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(jtiEntry("a", 0), 1)), jtiEntry("a", 0)),
		"time past 2106":       hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(jtiEntry("a", 1<<33), 1)), jtiEntry("a", 1<<33)),
		"unknown flags":        hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(append([]byte{16}, good[1:]...), 1)), append([]byte{16}, good[1:]...)),
		"client on a jti":      hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(append([]byte{entryClient}, good[1:]...), 1)), append([]byte{entryClient}, good[1:]...)),
		"same iss first":       hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(append([]byte{entrySameIss}, good[5:]...), 1)), append([]byte{entrySameIss}, good[5:]...)),
		"trailing in chunk":    hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(append(slices.Clone(good), 0), 1)), append(slices.Clone(good), 0)),
		"trailing after chunk": hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(good, 1)), append(slices.Clone(good), 0)),
		"chunk digest":         hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(good, 1)), jtiEntry("b", 100)),
		"chunk cut short":      hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(good, 1)), good[:3]),
		"trailing in header":   hostileObject(testSnapKey, append(hostileHeader(0, 0), 0), nil),
	}
	keys := []ed25519.PublicKey{testSnapPub}
	// The control: the same construction, well formed, parses.
	if s, err := ParseSnapshot(hostileObject(testSnapKey, hostileHeader(1, 0, chunkOf(good, 1)), good), keys); err != nil || len(s.JTI) != 1 {
		t.Fatalf("well-formed object: %v", err)
	}
	for name, b := range cases {
		var err error
		allocated := allocBytes(func() { _, err = ParseSnapshot(b, keys) })
		if !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: %v, want ErrBadSnapshot", name, err)
		}
		if allocated > 2<<20+uint64(len(b)) {
			t.Errorf("%s: %d bytes allocated", name, allocated)
		}
	}
}

func allocBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzSnapshotParse feeds the parser any object, and any header and body signed with the
// trusted key (what a buggy snapshot job could write): it never panics, and what it
// accepts is within bounds and survives a round trip.
func FuzzSnapshotParse(f *testing.F) {
	s := &Snapshot{Stream: "S", Subjects: "revocations.>", Sequence: 3, BuiltAt: time.Unix(5, 0),
		JTI:     []SnapshotJTI{{Iss: "i", JTI: "j", Exp: 99}, {Iss: "i", JTI: "k", Exp: 100}},
		Cutoffs: []SnapshotCutoff{{Claim: "sub", Value: "u", NotBefore: 7}, {Claim: "sub", Value: "u", ClientID: "web", NotBefore: 9}, {Claim: "sub", Value: "v", NotBefore: 8}}}
	whole, err := s.MarshalSigned(testSnapKey)
	if err != nil {
		f.Fatal(err)
	}
	hlen, k := binary.Uvarint(whole[len(snapshotMagic):])
	hstart := len(snapshotMagic) + k
	header := whole[hstart : hstart+int(hlen)]
	body := whole[hstart+int(hlen)+ed25519.SignatureSize:]
	f.Add(whole, header, body)
	f.Add([]byte(snapshotMagic), []byte{}, []byte{})
	f.Add([]byte(oldSnapshotMagic), hostileHeader(1, 0, snapChunk{n: 3, entries: 1}), []byte{1, 2, 3})
	keys := []ed25519.PublicKey{testSnapPub}
	f.Fuzz(func(t *testing.T, raw, header, body []byte) {
		if _, err := ParseSnapshot(raw, keys); err == nil && !bytes.Equal(raw, whole) {
			t.Fatal("an object not signed by the key parsed")
		}
		if len(header) > maxSnapshotHeader {
			return
		}
		got, err := ParseSnapshot(hostileObject(testSnapKey, header, body), keys)
		if err != nil {
			return
		}
		for _, e := range got.JTI {
			if len(e.JTI) == 0 || len(e.JTI) > event.MaxValueLen || len(e.Iss) > maxSnapshotIss || e.Exp <= 0 || e.Exp > maxUnixTime {
				t.Fatalf("entry out of bounds: %+v", e)
			}
		}
		for _, c := range got.Cutoffs {
			if len(c.Value) == 0 || len(c.Value) > event.MaxValueLen || len(c.Claim) == 0 || len(c.Claim) > event.MaxValueLen || len(c.ClientID) > event.MaxValueLen || c.NotBefore <= 0 || c.NotBefore > maxUnixTime {
				t.Fatalf("cutoff out of bounds: %+v", c)
			}
		}
		again, err := got.MarshalSigned(testSnapKey)
		if err != nil {
			t.Fatalf("re-encoding what parsed: %v", err)
		}
		back, err := ParseSnapshot(again, keys)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if fmt.Sprint(back.JTI, back.Cutoffs) != fmt.Sprint(got.JTI, got.Cutoffs) {
			t.Fatalf("round trip: %+v, want %+v", back, got)
		}
	})
}

// A snapshot read that stalls (a consumer lost in a NATS restart) is given up once it
// makes no progress for a while, instead of holding the replica for the load's whole
// deadline; a read that progresses is left alone (explorer finding, seed 2019).
func TestSnapshotStallGuard(t *testing.T) {
	g := newStallGuard(context.Background(), 300*time.Millisecond)
	defer g.stop()
	pr, pw := io.Pipe()
	defer pw.Close()
	r := g.reader(pr)
	go func() {
		for range 6 { // 6 × 100 ms of steady progress: longer than the limit in all
			time.Sleep(100 * time.Millisecond)
			_, _ = pw.Write([]byte("x"))
		}
	}()
	buf := make([]byte, 1)
	for range 6 {
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if g.ctx.Err() != nil {
		t.Fatal("a read that progresses was given up")
	}
	select {
	case <-g.ctx.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("a stalled read was not given up")
	}
}
