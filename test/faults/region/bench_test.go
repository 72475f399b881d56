package region

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/publish"
	revsync "github.com/revoked-dev/revoked/sync"
)

// replica is a sync.Replica following a stream over conn, and the set it feeds: what
// a sidecar's checks read.
type replica struct {
	set *blocklist.Set
	r   *revsync.Replica
}

func startReplica(b testing.TB, nc *nats.Conn) *replica {
	b.Helper()
	rep := &replica{set: blocklist.New()}
	var err error
	if rep.r, err = revsync.New(nc, rep.set, revsync.Options{}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = rep.r.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case <-rep.r.ReadyC():
	case <-time.After(10 * time.Second):
		b.Fatal("replica not ready")
	}
	return rep
}

func (rep *replica) has(jti string) bool { return rep.set.HasJTI(rep.set.JTIKey(iss, jti)) }

// BenchmarkHubToRegion measures, for revocations published one at a time in the hub,
// the time from the publish to the entry in the blocklist of a replica in the hub
// (following the stream) and of one in the region (following the mirror over the leaf
// node): what the extra hop costs. The blocklist is polled every 50µs.
//
//	go test -run '^$' -bench HubToRegion -benchtime 500x ./test/faults/region
func BenchmarkHubToRegion(b *testing.B) {
	f := newFleet(b)
	inHub := startReplica(b, f.Hub.Connect())
	inRegion := startReplica(b, f.Leaf.Connect())
	var hub, region, ack []time.Duration
	b.ResetTimer()
	for range b.N {
		jti := devissuer.RandomID()
		t0 := time.Now()
		f.revoke(b, jti)
		ack = append(ack, time.Since(t0))
		var hubAt, regionAt time.Duration
		for hubAt == 0 || regionAt == 0 {
			now := time.Since(t0)
			if now > 10*time.Second {
				b.Fatalf("revocation %s not applied after 10s (hub %v, region %v)", jti, hubAt, regionAt)
			}
			if hubAt == 0 && inHub.has(jti) {
				hubAt = now
			}
			if regionAt == 0 && inRegion.has(jti) {
				regionAt = now
			}
			time.Sleep(50 * time.Microsecond)
		}
		hub, region = append(hub, hubAt), append(region, regionAt)
	}
	b.StopTimer()
	report(b, "hub", hub)
	report(b, "region", region)
	report(b, "ack", ack)
}

// BenchmarkRegionCatchUp measures how long a region takes to catch up with the hub
// after the leaf link was cut while the hub stored 10,000 revocations: from the link
// healed to the last of them in the region's replica. The cut lasts 3s, or 15s: past
// the server's 10s source health check the mirror's consumer is torn down and set up
// again with the server's retry backoff.
//
//	go test -run '^$' -bench RegionCatchUp -benchtime 3x ./test/faults/region
func BenchmarkRegionCatchUp(b *testing.B) {
	for _, cut := range []time.Duration{3 * time.Second, 15 * time.Second} {
		b.Run("cut="+cut.String(), func(b *testing.B) { benchCatchUp(b, cut, 10_000) })
	}
}

func benchCatchUp(b *testing.B, cut time.Duration, events int) {
	f := newFleet(b)
	inRegion := startReplica(b, f.Leaf.Connect())
	ctx := context.Background()
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		f.Link.Partition()
		cutAt := time.Now()
		var failed atomic.Int64
		pl := f.pub.NewPipeline(ctx, 256, func(_ int, _ publish.Result, err error) {
			if err != nil {
				failed.Add(1)
			}
		})
		last := ""
		for j := range events {
			last = fmt.Sprintf("cut-%d-%d", i, j)
			if err := pl.Publish(j, event.Event{Type: event.TypeJTI, JTI: last, Iss: iss, Exp: time.Now().Add(time.Hour).Unix()}); err != nil {
				b.Fatal(err)
			}
		}
		pl.Close()
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d revocations not acknowledged by the hub", n)
		}
		if time.Since(cutAt) > cut {
			b.Fatalf("publishing took %v, longer than the cut", time.Since(cutAt))
		}
		time.Sleep(time.Until(cutAt.Add(cut)))
		b.StartTimer()
		t0 := time.Now()
		f.Link.Heal()
		for !inRegion.has(last) {
			if time.Since(t0) > 3*time.Minute {
				b.Fatal("the region has not caught up after 3 minutes")
			}
			time.Sleep(time.Millisecond)
		}
		took = append(took, time.Since(t0))
	}
	b.StopTimer()
	report(b, "catchup", took)
}

// report adds the p50, p99 and max of ds to the benchmark's output, in milliseconds.
func report(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	if len(ds) <= 10 {
		b.Logf("%s: %v", name, ds) // few and far apart: each one says something
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(at(0.50)), name+"-p50-ms")
	if len(ds) >= 100 {
		b.ReportMetric(ms(at(0.99)), name+"-p99-ms")
	}
	b.ReportMetric(ms(ds[len(ds)-1]), name+"-max-ms")
}
