package sync

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/bench/benchkit"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// Replay benchmarks: what a cold start costs per event. BenchmarkApply is the decode and
// the insert alone; BenchmarkReplay is a whole replica replaying a stream of a real
// (embedded) JetStream server until ready. bench/coldstart measures 1M events with real
// processes. Nothing here fails on timing.

func benchEvents(n int) [][]byte {
	exp := time.Now().Add(2 * time.Hour).Unix()
	p := make([][]byte, n)
	for i := range p {
		p[i] = benchkit.JTIEvent("https://idp.example.com", benchkit.RandomID(), exp)
	}
	return p
}

// BenchmarkApply is one jti event decoded, validated and added to the set.
func BenchmarkApply(b *testing.B) {
	evs := benchEvents(1 << 14)
	ns := testsupport.StartNATS(b)
	r, err := New(ns.Connect(), blocklist.New(), Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Apply(evs[i&(1<<14-1)], uint64(i), now, now)
		i++
	}
}

// BenchmarkReplay replays a stream of n jti events into a fresh replica, until ready;
// it reports events/s.
func BenchmarkReplay(b *testing.B) {
	for _, n := range []int{100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			ns := testsupport.StartNATS(b)
			js := ns.CreateStream(stream.Settings{})
			ctx := context.Background()
			evs := benchEvents(n)
			if _, err := benchkit.PublishAll(ctx, js, event.Subject(event.DefaultSubjectPrefix, event.TypeJTI), evs, 1000); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				set := blocklist.New()
				r, err := New(ns.Connect(), set, Options{Registerer: prometheus.NewRegistry()})
				if err != nil {
					b.Fatal(err)
				}
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { _ = r.Run(rctx); close(done) }()
				select {
				case <-r.ReadyC():
				case <-time.After(2 * time.Minute):
					b.Fatal("replica never ready")
				}
				cancel()
				<-done
				if jti, _ := set.Len(); jti != n {
					b.Fatalf("%d entries, want %d", jti, n)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkDecode compares the replica's event decoding with event.Decode
// (encoding/json) on a typical jti event.
func BenchmarkDecode(b *testing.B) {
	ev := benchEvents(1)[0]
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeEvent(ev, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := event.Decode(ev, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// FuzzDecodeEvent checks that the fast decoder, copying or not, always agrees with
// event.Decode: the same event and the same error. (A correctness check kept beside the benchmark that
// motivated the fast path.)
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"jti","jti":"a","exp":1767225600,"iss":"https://idp.example.com"}`,
		`{"type":"cutoff","claim":"sub","value":"user-42","not_before":1767222000,"reason":"logout"}`,
		`{"type":"jti","jti":"a","exp":1767225600,"JTI":"b"}`,
		`{"type":"jti","jti":"a\u0041","exp":1}`,
		`{"type":"jti","jti":"a","exp":1.0}`,
		`{"type":"jti","jti":"a","exp":-0,"x":[1,2]}`,
		`{"type":"jti","jti":"a","exp":12,"extra":null,"n":-1.5e3,"t":true} `,
		`{"type":"jti","jti":null,"exp":9223372036854775808}`,
		`{"type":"jti","jti":"a","exp":2}x`,
		`{"type":"jti","jti":"a","jti":"b","exp":2,"ſub":"x","Key":1}`,
		`{"type":"cutoff","claim":"sub","value":"u","not_before":1767222000,"client_id":"app-7","source":"api"}`,
		`{"type":"cutoff","claim":"sub","value":"u","not_before":1767222000,"Client_ID":"app-7","SOURCE":"x"}`,
		`{}`, `[]`, ``, `{"type":"jti",}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		want, werr := event.Decode(p, nil)
		for _, decode := range []func([]byte, []string) (event.Event, error){decodeEvent, decodeEventView} {
			got, gerr := decode(p, nil)
			if want != got || (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
				t.Fatalf("payload %q:\n fast %+v, %v\n json %+v, %v", p, got, gerr, want, werr)
			}
		}
	})
}
