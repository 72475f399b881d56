package authz

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/internal/envoyreq"
)

// BenchmarkCachedTokenHeap reports the heap a verified token takes in the token cache,
// its pre-built allow response included: the cache's memory is this times its size.
func BenchmarkCachedTokenHeap(b *testing.B) {
	e := newTestEnv(b)
	srv := NewGRPCServer(e.a, "x-revoked-sub")
	const n = 5000
	e.a, _ = NewAuthorizer(e.a.verifier, e.set, Options{CacheSize: n}), 0
	e.a.SetGate(ReasonOK)
	srv.a = e.a
	reqs := make([]string, n)
	for i := range reqs {
		reqs[i] = e.ed.Token("user-"+time.Now().String(), time.Hour, nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, tok := range reqs {
			if _, err := srv.Check(context.Background(), envoyreq.Check(envoyreq.Bearer(tok))); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/token")
		e.a.cache.Purge()
	}
}
