package sidecar

import (
	"context"
	"math"
	"runtime/debug"
	"time"
)

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
