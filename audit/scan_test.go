package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/publish"
	"github.com/revoked-dev/revoked/stream"
)

// fill publishes cutoffs on sub u-from… u-(to-1) through the publisher's pipeline.
func fill(t *testing.T, js jetstream.JetStream, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pl := publish.New(js, publish.Config{}).NewPipeline(ctx, 0, func(tag int, _ publish.Result, err error) {
		if err != nil {
			t.Errorf("event %d: %v", tag, err)
		}
	})
	for i := from; i < to; i++ {
		ev := event.Event{Type: event.TypeCutoff, Claim: "sub", Value: fmt.Sprintf("u-%d", i), NotBefore: testNow.Unix()}
		if err := pl.Publish(i, ev); err != nil {
			t.Fatal(err)
		}
	}
	pl.Close()
	if err := pl.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestScan(t *testing.T) {
	srv := testsupport.StartNATS(t)
	js := srv.CreateStream(stream.Settings{})
	ctx := context.Background()
	stats, err := Scan(ctx, js, ScanOptions{}, func(*Record) { t.Error("a record from an empty stream") })
	if err != nil || stats.Read != 0 {
		t.Fatalf("empty stream: %+v, %v", stats, err)
	}
	fill(t, js, 0, 3000)
	// Written by hand, as an IdP may: the value escaped (user-42), and a payload
	// that is no event at all.
	for _, payload := range []string{
		`{"type":"cutoff","claim":"sub","value":"user\u002d42","not_before":1767225600}`,
		`not json`,
		`{"type":"cutoff","claim":"tenant","value":"user-42","not_before":1767225600}`,
	} {
		if _, err := js.Publish(ctx, "revocations.cutoff", []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	fill(t, js, 3000, 3043)
	var all []uint64
	stats, err = Scan(ctx, js, ScanOptions{}, func(r *Record) {
		all = append(all, r.Seq)
		if r.Stored.IsZero() || r.Subject != "revocations.cutoff" {
			t.Errorf("record %+v", r)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Read != 3046 || stats.Undecodable != 1 || len(all) != 3045 || stats.First != 1 || stats.Last != 3046 {
		t.Fatalf("stats %+v, %d records", stats, len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i] <= all[i-1] {
			t.Fatalf("out of order: %d after %d", all[i], all[i-1])
		}
	}
	// Needles skip only what cannot hold them: the escaped value and the claim not
	// allowed are still read; u-42 is not user-42, u-4 is not u-42.
	var got []string
	stats, err = Scan(ctx, js, ScanOptions{Needles: []string{"user-42", "u-42"}}, func(r *Record) {
		got = append(got, fmt.Sprintf("%d:%s", r.Seq, r.Event.Value))
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[43:u-42 3001:user-42 3003:user-42]"; fmt.Sprint(got) != want || stats.Read != 3046 {
		t.Fatalf("with needles: %v (read %d), want %s", got, stats.Read, want)
	}
}

func TestScanStopsWithItsContext(t *testing.T) {
	srv := testsupport.StartNATS(t)
	js := srv.CreateStream(stream.Settings{})
	fill(t, js, 0, 20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Scan(ctx, js, ScanOptions{}, func(*Record) {}); err == nil {
		t.Fatal("a cancelled scan reported success")
	}
	if _, err := Scan(context.Background(), js, ScanOptions{Stream: "NOPE"}, func(*Record) {}); err == nil {
		t.Fatal("a missing stream reported success")
	}
}

// A stream may hold other subjects (a source mixed in): they are not revocations.
func TestScanSkipsOtherSubjects(t *testing.T) {
	srv := testsupport.StartNATS(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: event.DefaultStream, Subjects: []string{"revocations.>", "audit.>", "revocationsx"}}); err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"type":"cutoff","claim":"sub","value":"u","not_before":1767225600}`)
	for _, subj := range []string{"audit.x", "revocations.cutoff", "revocationsx", "revocations.cutoff", "audit.y"} {
		if _, err := js.Publish(ctx, subj, payload); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	stats, err := Scan(ctx, js, ScanOptions{}, func(r *Record) { got = append(got, r.Seq) })
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[2 4]" || stats.Read != 2 || stats.First != 2 || stats.Last != 4 {
		t.Fatalf("records %v, stats %+v", got, stats)
	}
}
