package sync_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
	revsync "github.com/revoked-dev/revoked/sync"
)

// rejected reads revoked_events_rejected_total by reason from reg.
func rejected(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "revoked_events_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// TestHostileEvents is the hostile event table of issue 6, applied as the replica
// applies stream messages: each bad event is counted under its reason and skipped,
// nothing panics, the good events around them are applied.
func TestHostileEvents(t *testing.T) {
	now := time.Now()
	future := now.Add(time.Hour).Unix()
	cases := []struct {
		name    string
		payload string
		reason  string // "" when the event is applied
	}{
		{"5 MB payload", `{"type":"jti","jti":"big","exp":` + fmt.Sprint(future) + `,"pad":"` + strings.Repeat("x", 5<<20) + `"}`, "too_large"},
		{"payload one byte over 4 KiB", `{"type":"jti","jti":"big","exp":` + fmt.Sprint(future) + `,"pad":"` + strings.Repeat("x", 4096) + `"}`, "too_large"},
		{"invalid JSON", `{"type":"jti",`, "malformed"},
		{"not an object", `["jti","x"]`, "malformed"},
		{"null", `null`, "unknown_type"},
		{"empty", ``, "malformed"},
		{"non-UTF-8 bytes", "{\"type\":\"jti\",\"jti\":\"\xff\xfe\",\"exp\":" + fmt.Sprint(future) + "}", "malformed"},
		{"deeply nested JSON", `{"type":"jti","x":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`, "invalid"},
		{"nesting deeper than encoding/json allows", strings.Repeat("[", 4000), "malformed"},
		{"exp as a string", `{"type":"jti","jti":"s","exp":"tomorrow"}`, "malformed"},
		{"exp as a huge float", `{"type":"jti","jti":"f","exp":1e300}`, "malformed"},
		{"exp in the far past", `{"type":"jti","jti":"past","exp":1}`, "expired"},
		{"exp zero", `{"type":"jti","jti":"zero","exp":0}`, "invalid"},
		{"exp negative", `{"type":"jti","jti":"neg","exp":-5}`, "invalid"},
		{"exp beyond 2106", `{"type":"jti","jti":"far","exp":253402300799}`, "invalid"},
		{"exp at the last second of 2106", `{"type":"jti","jti":"edge","exp":4294967295}`, ""},
		{"cutoff not_before in the far past", `{"type":"cutoff","claim":"sub","value":"u","not_before":1}`, "expired"},
		{"cutoff not_before in the far future", `{"type":"cutoff","claim":"sub","value":"v","not_before":4294967295}`, ""},
		{"cutoff on a claim not allowed", `{"type":"cutoff","claim":"email","value":"a@b","not_before":` + fmt.Sprint(now.Unix()) + `}`, "invalid"},
		{"jti of 257 bytes", `{"type":"jti","jti":"` + strings.Repeat("j", 257) + `","exp":` + fmt.Sprint(future) + `}`, "invalid"},
		{"unknown type", `{"type":"unrevoke","jti":"x","exp":` + fmt.Sprint(future) + `}`, "unknown_type"},
		{"type with a NUL byte", `{"type":"jti\u0000","jti":"x","exp":` + fmt.Sprint(future) + `}`, "unknown_type"},
		{"duplicate keys: the last wins", `{"type":"cutoff","type":"jti","jti":"dup","exp":` + fmt.Sprint(future) + `}`, ""},
		{"unknown fields are ignored", `{"type":"jti","jti":"extra","exp":` + fmt.Sprint(future) + `,"future_field":{"a":[1,2,3]}}`, ""},
	}
	set := blocklist.New()
	reg := prometheus.NewPedanticRegistry()
	r, err := revsync.New(testsupport.StartNATS(t).Connect(), set, revsync.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{}
	applied := 0
	for i, c := range cases {
		r.Apply([]byte(c.payload), uint64(i+1), now, now)
		if c.reason == "" {
			applied++
		} else {
			want[c.reason]++
		}
	}
	got := rejected(t, reg)
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("rejected{reason=%q} = %v, want %v", reason, got[reason], n)
		}
	}
	jti, cutoff := set.Len()
	if jti+cutoff != applied {
		t.Errorf("%d jti and %d cutoff entries, want %d in all", jti, cutoff, applied)
	}
	for _, id := range []string{"big", "past", "far", "neg", "x"} {
		if set.HasJTI(set.JTIKey("", id)) {
			t.Errorf("rejected event %q reached the blocklist", id)
		}
	}
}

// TestHostileStream sends hostile messages through a real NATS server: a 5 MB message
// (refused by the stream, never reaching a replica) and a burst of bad events between
// good ones. The replica applies the good ones, counts the others, reaches the
// stream's last sequence, and its heap stays bounded.
func TestHostileStream(t *testing.T) {
	srv := testsupport.StartNATS(t)
	js := srv.CreateStream(stream.Settings{})
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	set := blocklist.New()
	reg := prometheus.NewPedanticRegistry()
	r, err := revsync.New(nc, set, revsync.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	runReplica(t, r)
	pubCtx, pubCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pubCancel()

	// 5 MB: the server takes it (max_payload 8 MB here) but the stream's MaxMsgSize
	// (4 KiB) refuses it, so no replica ever reads it.
	if _, err := js.Publish(pubCtx, "revocations.jti", make([]byte, 5<<20)); err == nil {
		t.Fatal("the stream stored a 5 MB message")
	}
	exp := time.Now().Add(time.Hour).Unix()
	bad := []string{
		`{"type":"jti",`,
		"\xff\xfe\xfd",
		`{"type":"jti","jti":"past","exp":1}`,
		`{"type":"nope"}`,
		strings.Repeat("[", 4000),
		`{"type":"jti","jti":"far","exp":99999999999}`,
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const rounds = 200
	var last *jetstream.PubAck
	h0 := heap()
	for i := range rounds {
		for _, b := range bad {
			if _, err := js.Publish(pubCtx, "revocations.jti", []byte(b)); err != nil {
				t.Fatal(err)
			}
		}
		good := fmt.Sprintf(`{"type":"jti","jti":"good-%d","exp":%d}`, i, exp)
		if last, err = js.Publish(pubCtx, "revocations.jti", []byte(good)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.LastSequence() < last.Sequence {
		if time.Now().After(deadline) {
			t.Fatalf("replica at sequence %d of %d", r.LastSequence(), last.Sequence)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if jti, _ := set.Len(); jti != rounds {
		t.Errorf("%d jti entries, want %d", jti, rounds)
	}
	got := rejected(t, reg)
	for reason, n := range map[string]float64{"malformed": 3 * rounds, "expired": rounds, "unknown_type": rounds, "invalid": rounds} {
		if got[reason] != n {
			t.Errorf("rejected{reason=%q} = %v, want %v", reason, got[reason], n)
		}
	}
	if h1 := heap(); h1 > h0+32<<20 {
		t.Errorf("heap grew from %d MiB to %d MiB", h0>>20, h1>>20)
	}
}

// FuzzApply feeds any payload to the replica as a stream message: nothing panics, every
// message is either applied or counted as rejected (exactly one of the two), and a
// payload event.Decode refuses never changes the blocklist.
func FuzzApply(f *testing.F) {
	nc, err := nats.Connect(testsupport.StartNATS(f).URL())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(nc.Close)
	set := blocklist.New()
	reg := prometheus.NewPedanticRegistry()
	r, err := revsync.New(nc, set, revsync.Options{Registerer: reg})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		`{"type":"jti","jti":"a","exp":4000000000}`,
		`{"type":"cutoff","claim":"sub","value":"u","not_before":4000000000,"iss":"https://idp"}`,
		`{"type":"jti","jti":"a","exp":1}`,
		`{"type":"jti",`, "\xff", `null`, `[]`, `{"type":"cutoff","claim":"email","value":"x","not_before":5}`,
	} {
		f.Add([]byte(s))
	}
	count := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			f.Fatal(err)
		}
		n := 0.0
		for _, mf := range mfs {
			if mf.GetName() == "revoked_events_rejected_total" || mf.GetName() == "revoked_events_applied_total" {
				for _, m := range mf.GetMetric() {
					n += m.GetCounter().GetValue()
				}
			}
		}
		return n
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, payload []byte) {
		before := count()
		j0, c0 := set.Len()
		r.Apply(payload, 1, now, now)
		if got := count() - before; got != 1 {
			t.Fatalf("applied+rejected grew by %v, want 1", got)
		}
		if _, err := event.Decode(payload, nil); err != nil {
			if j1, c1 := set.Len(); j1 != j0 || c1 != c0 {
				t.Fatalf("a refused payload changed the blocklist: %v", err)
			}
		}
	})
}

// A replica whose consumer cannot be recreated for a while must not stay stuck once it
// can be again. Here the replica is cut off from NATS, its consumer is deleted and the
// stream's only consumer slot taken; when it reconnects, every attempt to recreate the
// consumer fails. Once the slot is free again, the replica resumes (through the
// ordered consumer's next reset, or the replica's stall check, whichever comes first)
// and the events published meanwhile are applied.
func TestHostileConsumerStall(t *testing.T) {
	srv := testsupport.StartNATS(t)
	js := srv.CreateStream(stream.Settings{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := stream.Config(stream.Settings{})
	cfg.MaxConsumers = 1
	st, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		t.Fatalf("stream with one consumer slot: %v", err)
	}
	proxy := testsupport.StartProxy(t, srv.Addr().String())
	nc, err := nats.Connect(proxy.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	set := blocklist.New()
	r, err := revsync.New(nc, set, revsync.Options{StallAfter: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runReplica(t, r)
	exp := time.Now().Add(time.Hour).Unix()
	publish := func(jti string) uint64 {
		t.Helper()
		ack, err := js.Publish(ctx, "revocations.jti", []byte(fmt.Sprintf(`{"type":"jti","jti":%q,"exp":%d}`, jti, exp)))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	waitSeq := func(seq uint64, d time.Duration) bool {
		deadline := time.Now().Add(d)
		for r.LastSequence() < seq {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(10 * time.Millisecond)
		}
		return true
	}
	if !waitSeq(publish("before"), 10*time.Second) {
		t.Fatal("first event not applied")
	}
	proxy.Partition()
	var name string
	for n := range st.ConsumerNames(ctx).Name() {
		name = n
	}
	if name == "" {
		t.Fatal("no consumer")
	}
	if err := st.DeleteConsumer(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "blocker", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	seq := publish("during")
	proxy.Heal()
	// Long enough for the ordered consumer's own resets (1 s, 2 s) to give up.
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if waitSeq(seq, 4*time.Second) {
		t.Fatal("applied while no consumer could exist")
	}
	// Connected but stuck behind the stream: the replica says it is stale.
	if s := r.Staleness(time.Now()); s < time.Second {
		t.Fatalf("staleness %v while stalled behind the stream", s)
	}
	if err := st.DeleteConsumer(ctx, "blocker"); err != nil {
		t.Fatal(err)
	}
	if !waitSeq(seq, 15*time.Second) {
		t.Fatalf("replica stuck at sequence %d of %d after the slot was freed", r.LastSequence(), seq)
	}
	if !set.HasJTI(set.JTIKey("", "during")) {
		t.Fatal("event published during the stall not applied")
	}
	// The supervisor's next check (every second) sees it following again.
	testsupport.Until(t, 3*time.Second, "staleness back to 0 after the replica caught up", func() bool { return r.Staleness(time.Now()) == 0 })
}
