package blocklist

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The benchmarks follow nats-server's server/thw/thw_test.go: inputs built before
// b.ResetTimer, one benchmark per operation, a large pre-filled case (1M entries, the
// CONTRACT's sizing), b.ReportAllocs. They never fail on timing.

const (
	benchIss = "https://idp.example.com"
	benchExp = 4_000_000_000 // far future: nothing is purged
)

func benchJTI(i int) string { return "jti-" + strconv.Itoa(i) + "-7f3c9a1b2c3d4e5f" }

// filled returns a Set holding n jti entries, memoised per n so sub-benchmarks share it.
var (
	filledMu   sync.Mutex
	filledSets = map[int]*Set{}
)

func filled(n int) *Set {
	filledMu.Lock()
	defer filledMu.Unlock()
	if s, ok := filledSets[n]; ok {
		return s
	}
	s := New()
	for i := range n {
		s.AddJTI(s.JTIKey(benchIss, benchJTI(i)), benchExp)
	}
	filledSets[n] = s
	return s
}

// naiveSet is the baseline of issue 5: the whole event key as a string in one map
// behind one mutex, as a first version would write it.
type naiveSet struct {
	mu sync.Mutex
	m  map[string]int64
}

func newNaive() *naiveSet { return &naiveSet{m: make(map[string]int64)} }

func (n *naiveSet) add(iss, jti string, exp int64) {
	n.mu.Lock()
	n.m[iss+"\x00"+jti] = exp
	n.mu.Unlock()
}

func (n *naiveSet) has(iss, jti string) bool {
	n.mu.Lock()
	_, ok := n.m[iss+"\x00"+jti]
	n.mu.Unlock()
	return ok
}

var sizes = []struct {
	name string
	n    int
}{{"1k", 1_000}, {"1M", 1_000_000}}

// BenchmarkCheck is the per-request lookup of a token's precomputed keys (two jti keys,
// six cutoff keys, no cutoffs stored) in a filled set: the work the hot path does after
// the token cache.
func BenchmarkCheck(b *testing.B) {
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			s := filled(sz.n)
			q := s.NewQuery(benchIss, "not-revoked", 1, []Claim{{"sub", "u"}, {"sid", "s"}, {"client_id", "c"}})
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if s.Check(&q) != NotRevoked {
					b.Fatal("revoked")
				}
			}
		})
	}
}

// BenchmarkCheckCutoffs is the same lookup in a set that also holds cutoffs (100k on
// other users: the lookups run), for a token without a client, with a client_id, and
// with a client_id and a different azp; "scoped" adds 100k client-scoped cutoffs on the
// sub of other users, which makes the client-scoped lookups of sub run too (2 keys per
// client of the token; those of sid and client_id are skipped: no scoped cutoff names
// them).
func BenchmarkCheckCutoffs(b *testing.B) {
	s := New()
	for i := range 1_000_000 {
		s.AddJTI(s.JTIKey(benchIss, benchJTI(i)), benchExp)
	}
	for i := range 100_000 {
		s.AddCutoff(s.CutoffKey(benchIss, "sub", "other-"+strconv.Itoa(i)), benchExp)
	}
	claims := []Claim{{"sub", "u"}, {"sid", "s"}, {"client_id", "c"}}
	tokens := []struct {
		name    string
		clients []string
	}{{"no-client", nil}, {"client", []string{"c"}}, {"client+azp", []string{"c", "a"}}}
	run := func(stored string) {
		for _, tok := range tokens {
			b.Run(stored+"/"+tok.name, func(b *testing.B) {
				q := s.NewQuery(benchIss, "not-revoked", 1, claims, tok.clients...)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if s.Check(&q) != NotRevoked {
						b.Fatal("revoked")
					}
				}
			})
		}
	}
	run("unscoped")
	for i := range 100_000 {
		s.AddCutoff(s.ClientCutoffKey(benchIss, "sub", "other-"+strconv.Itoa(i), "c"), benchExp)
	}
	run("scoped")
}

// BenchmarkCheckParallel is the same lookup from every core at once, half the queries
// hitting revoked entries, with (writer) and without a concurrent writer.
func BenchmarkCheckParallel(b *testing.B) {
	s := filled(1_000_000)
	qs := make([]Query, 1024)
	for i := range qs {
		jti := benchJTI(i * 977)
		if i%2 == 1 {
			jti = "fresh-" + strconv.Itoa(i)
		}
		qs[i] = s.NewQuery(benchIss, jti, 1, nil)
	}
	for _, writer := range []bool{false, true} {
		b.Run("1M/writer="+strconv.FormatBool(writer), func(b *testing.B) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if writer {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						s.AddJTI(s.JTIKey(benchIss, benchJTI(i%1_000_000)), benchExp)
					}
				})
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					s.Check(&qs[i&1023])
					i++
				}
			})
			b.StopTimer()
			close(stop)
			wg.Wait()
		})
	}
}

// BenchmarkNaiveHas is the baseline's lookup: string concat and one global mutex.
func BenchmarkNaiveHas(b *testing.B) {
	n := newNaive()
	for i := range 1_000_000 {
		n.add(benchIss, benchJTI(i), benchExp)
	}
	b.Run("1M", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if n.has(benchIss, "not-revoked") || n.has("", "not-revoked") {
				b.Fatal("revoked")
			}
		}
	})
	b.Run("1M/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				n.has(benchIss, benchJTI(i*977%1_000_000))
				i++
			}
		})
	})
}

// BenchmarkAddJTI is one event applied: key hashing and insert into a set that grows
// from empty.
func BenchmarkAddJTI(b *testing.B) {
	jtis := make([]string, 1<<16)
	for i := range jtis {
		jtis[i] = benchJTI(i)
	}
	s := New()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.AddJTI(s.JTIKey(benchIss, jtis[i&(1<<16-1)]+strconv.Itoa(i>>16)), benchExp)
		i++
	}
}

// BenchmarkPurge is one full purge pass over a 1M-entry set in which nothing is due.
func BenchmarkPurge(b *testing.B) {
	s := filled(1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		s.Purge(1_000_000, Retention{Lifetime: 86400 * time.Second, Leeway: 10 * time.Second})
	}
}

// BenchmarkMemory reports the heap held per jti entry at 1M entries (bytes/entry), for
// the Set and for the naive baseline. The loop body is the fill itself, so -benchtime=1x
// is enough.
func BenchmarkMemory(b *testing.B) {
	const n = 1_000_000
	jtis := make([]string, n)
	for i := range jtis {
		jtis[i] = benchJTI(i)
	}
	// heapB/entry is what the Go heap holds; slotB/entry what the set holds outside it
	// (slots.go). Their sum is the blocklist's memory per entry.
	measure := func(b *testing.B, fill func() any) {
		var heap, slots float64
		for b.Loop() {
			before := heapInUse()
			keep := fill()
			heap = float64(int64(heapInUse())-int64(before)) / n
			if s, ok := keep.(*Set); ok {
				slots = float64(s.SlotBytes()) / n
			}
			runtime.KeepAlive(keep)
		}
		b.ReportMetric(heap, "heapB/entry")
		b.ReportMetric(slots, "slotB/entry")
	}
	b.Run("set/1M", func(b *testing.B) {
		measure(b, func() any {
			s := New()
			for _, j := range jtis {
				s.AddJTI(s.JTIKey(benchIss, j), benchExp)
			}
			return s
		})
	})
	b.Run("naive/1M", func(b *testing.B) {
		measure(b, func() any {
			s := newNaive()
			for _, j := range jtis {
				s.add(benchIss, j, benchExp)
			}
			return s
		})
	})
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
