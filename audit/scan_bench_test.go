package audit

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/publish"
	"github.com/revoked-dev/revoked/stream"
)

// BenchmarkScan reads a stream of AUDIT_BENCH_EVENTS events (default 200,000) as
// explain does (needles: one token's values) and as history --iss does (no needles:
// every event decoded). One op is one whole scan.
func BenchmarkScan(b *testing.B) {
	n := 200_000
	if s := os.Getenv("AUDIT_BENCH_EVENTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	srv := testsupport.StartNATS(b)
	js := srv.CreateStream(stream.Settings{})
	ctx := context.Background()
	start := time.Now()
	pl := publish.New(js, publish.Config{}).NewPipeline(ctx, 0, func(tag int, _ publish.Result, err error) {
		if err != nil {
			b.Errorf("event %d: %v", tag, err)
		}
	})
	now := time.Now().Unix()
	for i := range n {
		ev := event.Event{Type: event.TypeCutoff, Claim: "sub", Value: fmt.Sprintf("user-%d", i), NotBefore: now,
			Iss: "https://idp.example.com", Reason: "logout", RevokedBy: "idp", RevokedAt: now}
		if i%2 == 0 {
			ev = event.Event{Type: event.TypeJTI, JTI: fmt.Sprintf("jti-%d", i), Exp: now + 3600,
				Iss: "https://idp.example.com", Sub: fmt.Sprintf("user-%d", i), Reason: "logout", RevokedAt: now}
		}
		if err := pl.Publish(i, ev); err != nil {
			b.Fatal(err)
		}
	}
	pl.Close()
	b.Logf("%d events published in %s", n, time.Since(start).Round(time.Millisecond))
	for name, needles := range map[string][]string{
		"explain": {"jti-77", "user-77", "sess-1", "web", "orders"},
		"all":     nil,
	} {
		b.Run(name, func(b *testing.B) {
			found := 0
			for b.Loop() {
				found = 0
				stats, err := Scan(ctx, js, ScanOptions{Needles: needles}, func(*Record) { found++ })
				if err != nil || stats.Read != n {
					b.Fatalf("%+v, %v", stats, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/event")
			b.ReportMetric(float64(found), "records")
		})
	}
}
