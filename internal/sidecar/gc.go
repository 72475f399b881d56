package sidecar

import (
	"context"
	"runtime/debug"
	"sync"
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
