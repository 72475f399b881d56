package sidecar

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

func waitGCPercent(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for gcPercent() != want {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d, want %d", gcPercent(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReplayRelaxesGCUntilReady: GOGC is raised while any replay runs and the process's
// own value comes back once the last one is ready or stopped, whatever the order.
func TestReplayRelaxesGCUntilReady(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	a, b := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	relaxGCUntil(context.Background(), a)
	if got := gcPercent(); got != replayGCPercent {
		t.Fatalf("during a replay GOGC is %d, want %d", got, replayGCPercent)
	}
	relaxGCUntil(ctx, b) // a second sidecar in the process
	close(a)
	time.Sleep(20 * time.Millisecond)
	if got := gcPercent(); got != replayGCPercent {
		t.Fatalf("one replay of two done: GOGC %d, want %d", got, replayGCPercent)
	}
	cancel() // the second stops before ready
	waitGCPercent(t, 25)

	// Already higher than the replay's setting, or off: left alone.
	for _, p := range []int{800, -1} {
		debug.SetGCPercent(p)
		done := make(chan struct{})
		relaxGCUntil(context.Background(), done)
		if got := gcPercent(); got != p {
			t.Fatalf("GOGC %d changed to %d by a replay", p, got)
		}
		close(done)
		waitGCPercent(t, p)
	}
}

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
