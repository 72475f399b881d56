package sidecar

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

// TestGoMemoryLimitLeavesRoomForTheBlocklist: with GOMEMLIMIT set, the runtime's limit
// is the configured one less the blocklist's tables, kept in step as they grow, and
// given back when the sidecar stops.
func TestGoMemoryLimitLeavesRoomForTheBlocklist(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(512 << 20))
	var tables atomic.Int64
	tables.Store(100 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	limitGoMemoryBeside(ctx, tables.Load)
	if got := debug.SetMemoryLimit(-1); got != 412<<20 {
		t.Fatalf("limit %d MiB, want 412", got>>20)
	}
	tables.Store(200 << 20)
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) != 312<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d MiB after the tables grew, want 312", debug.SetMemoryLimit(-1)>>20)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	deadline = time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) != 512<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("limit %d MiB after stop, want 512", debug.SetMemoryLimit(-1)>>20)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := goMemoryLimit(64<<20, 60<<20); got != 32<<20 {
		t.Fatalf("limit below the floor: %d MiB", got>>20)
	}
}
