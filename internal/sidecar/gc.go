package sidecar

import (
	"context"
	"math"
	"runtime/debug"
	"sync"
	"time"
)

// While a replica replays the stream, its heap is nearly all garbage: each event's
// message, decoded and dropped, around a live heap of a few MiB (the blocklist's tables
// live outside the Go heap). At the process's GOGC (the chart sets 25) the collector
// would start a cycle every few hundred KiB allocated, hundreds of cycles over 1M events
// (+1 CPU-s, +0.9 s to ready, measured). So the replay runs at replayGCPercent, bounded
// by the small live heap; once ready the process's setting is restored and the
// replay's garbage returned to the OS, so the idle and serving footprint is unchanged.
const replayGCPercent = 400

// replayGC is process-wide: GOGC is the process's, and tests run several sidecars in
// one process. The first replay raises it, the last one to finish restores it.
var replayGC struct {
	sync.Mutex
	active int
	saved  int
}

// relaxGCUntil raises GOGC until done is closed or ctx ends.
func relaxGCUntil(ctx context.Context, done <-chan struct{}) {
	replayGC.Lock()
	if replayGC.active == 0 {
		replayGC.saved = debug.SetGCPercent(-1) // read it; set below
		if replayGC.saved >= 0 && replayGC.saved < replayGCPercent {
			debug.SetGCPercent(replayGCPercent)
		} else {
			debug.SetGCPercent(replayGC.saved) // off, or already higher: keep it
		}
	}
	replayGC.active++
	replayGC.Unlock()
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
		}
		replayGC.Lock()
		defer replayGC.Unlock()
		if replayGC.active--; replayGC.active == 0 {
			debug.SetGCPercent(replayGC.saved)
			debug.FreeOSMemory()
		}
	}()
}

// The blocklist's tables live outside the Go heap, so GOMEMLIMIT (the chart sets it at
// 90% of the container's limit) does not see them: with 4M entries (~100 MiB of tables)
// the heap could grow to the whole limit before the collector pushed back, and the
// container would be killed first. While a limit is set, the runtime is given the limit
// less the tables' size, so the limit stays about the whole process.
func limitGoMemoryBeside(ctx context.Context, offHeap func() int64) {
	configured := debug.SetMemoryLimit(-1)
	if configured == math.MaxInt64 {
		return // no limit set: nothing to keep in step
	}
	apply := func() {
		debug.SetMemoryLimit(goMemoryLimit(configured, offHeap()))
	}
	apply()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				debug.SetMemoryLimit(configured)
				return
			case <-t.C:
				apply()
			}
		}
	}()
}

// goMemoryLimit is the Go runtime's share of limit beside offHeap bytes, never less
// than a floor that leaves the runtime room to serve (an over-full blocklist is
// refused by --max-entries, not by starving the heap).
func goMemoryLimit(limit, offHeap int64) int64 {
	const floor = 32 << 20
	return max(limit-offHeap, floor)
}
